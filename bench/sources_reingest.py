"""Ingest throughput per source and the re-ingest cost after changing 1% of it, on real pages (the Python
3.11 library docs from Debian's python3.11-doc) and the real packaged MiniLM embedder. Prints numbers only.

    flock /tmp/slm-heavy.lock timeout 900 python bench/sources_reingest.py --source web|git|s3 [--pages 80]

web: the pages served from a copy on a loopback HTTP server (http.server: Last-Modified, 304 on
     If-Modified-Since), crawled from library/index.html; crawl-only pages/s measured apart from the ingest.
git: the same files committed to a local bare repository (git+file://…@main).
s3:  the same files in moto's S3 server on loopback.
Then 1% of the documents (at least one) get a sentence added to a paragraph, and the source is ingested again.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slm.config import Settings  # noqa: E402
from slm.kb.connectors.spec import SourceSpec, open_source  # noqa: E402
from slm.kb.ingest import ingest  # noqa: E402
from slm.kb.local import KnowledgeBase  # noqa: E402

DOCS = Path("/usr/share/doc/python3.11/html")
SENTENCE = " This paragraph was revised for the re-ingestion benchmark."
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.invalid", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@example.invalid", "GIT_CONFIG_GLOBAL": "/dev/null"}


def edit(path: Path) -> None:
    text = path.read_text(encoding="utf-8", errors="replace")
    ends = [m.start() for m in re.finditer("</p>", text)]
    at = ends[len(ends) // 2] if ends else len(text)
    path.write_text(text[:at] + SENTENCE + text[at:], encoding="utf-8")
    stamp = time.time() + 5  # a new Last-Modified even within the same second
    os.utime(path, (stamp, stamp))


class _Quiet(SimpleHTTPRequestHandler):
    statuses: list[int] = []

    def log_message(self, *args) -> None:
        pass

    def send_response(self, code, message=None) -> None:
        type(self).statuses.append(code)
        super().send_response(code, message)


def serve(folder: Path):
    handler = partial(_Quiet, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def crawl_pages(base: str, pages: int, settings: Settings) -> list[str]:
    """The ids a crawl of `pages` pages finds; crawl-only throughput is printed."""
    spec = SourceSpec(f"{base}/library/index.html", crawl=True, max_pages=pages, max_depth=3)
    source = open_source(spec, settings.ingest, cache_dir=Path(tempfile.mkdtemp()))
    t0 = time.perf_counter()
    found = source.discover()
    seconds = time.perf_counter() - t0
    source.close()
    fetched = len(found.items) + len(found.failed)
    print(f"crawl only: {fetched} pages ({len(found.items)} documents, {len(found.failed)} failed) in {seconds:.1f} s "
          f"= {fetched / seconds:.1f} pages/s, {source.requests} requests")
    return [item.id for item in found.items]


def report(label: str, r, full_seconds: float | None = None) -> None:
    share = f", {r.seconds / full_seconds:.1%} of the full ingest" if full_seconds else ""
    print(f"{label}: {r.seen} seen, {r.added} added, {r.changed} changed, {r.unchanged} unchanged, "
          f"{r.deleted} deleted, {len(r.failed)} failed; {r.chunks_written} chunks written, {r.embedded} embedded; "
          f"{r.seconds:.1f} s = {r.seen / r.seconds:.2f} docs/s{share} "
          f"(discover {r.timings.get('discover', 0):.1f} s, load {r.timings.get('load', 0):.1f} s, "
          f"embed {r.timings.get('embed', 0):.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", choices=["web", "git", "s3"], required=True)
    parser.add_argument("--pages", type=int, default=80, help="documents ingested")
    parser.add_argument("--crawl-pages", type=int, default=300, help="pages for the crawl-only throughput")
    parser.add_argument("--share", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="slm-sources-bench-"))
    site = work / "site"
    shutil.copytree(DOCS / "library", site / "library")
    shutil.copytree(DOCS / "_static", site / "_static")
    settings = Settings(kb=work / "kb")
    server, base = serve(site)
    try:
        crawl_pages(base, args.crawl_pages, settings)
        ids = crawl_pages(base, args.pages, settings)  # the same page set for every source
        files = [site / i[len(base) + 1 :] for i in ids if i.endswith(".html")]
        if args.source == "web":
            spec = SourceSpec(f"{base}/library/index.html", crawl=True, max_pages=args.pages, max_depth=3)
        elif args.source == "git":
            spec = SourceSpec(git_repo(work, files, site))
        else:
            s3 = start_s3()
            spec = SourceSpec("s3://docs/library", endpoint_url=s3.endpoint)
            s3.put_all(files, site)
        with KnowledgeBase.open(settings.kb, settings, create=True) as kb:
            full = ingest(spec, kb, progress=False)
            report(f"{args.source} full ingest", full)
            _Quiet.statuses.clear()
            same = ingest(spec, kb, progress=False)
            report(f"{args.source} unchanged re-ingest", same, full.seconds)
            if args.source == "web":
                print(f"  HTTP statuses on the re-crawl: {dict(sorted(_count(_Quiet.statuses).items()))}")
            docs = [d.id for d in kb.documents()]
            chosen = random.Random(args.seed).sample(docs, max(1, math.ceil(len(docs) * args.share)))
            for doc_id in chosen:
                rel = doc_id[len(base) + 1 :] if args.source == "web" else f"library/{doc_id}"
                edit(site / rel)
            if args.source == "git":
                commit_changes(work, site, [site / (f"library/{d}") for d in chosen])
            elif args.source == "s3":
                s3.put_all([site / f"library/{d}" for d in chosen], site)
            changed = ingest(spec, kb, progress=False)
            report(f"{args.source} re-ingest after changing {len(chosen)} of {len(docs)} documents", changed, full.seconds)
        if args.source == "s3":
            s3.stop()
    finally:
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)


def _count(values):
    out: dict[int, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def git_repo(work: Path, files: list[Path], site: Path) -> str:
    bare = work / "docs.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(bare)], check=True, env=GIT_ENV)
    clone = work / "clone"
    subprocess.run(["git", "clone", "-q", str(bare), str(clone)], check=True, env=GIT_ENV)
    subprocess.run(["git", "checkout", "-q", "-b", "main"], cwd=clone, check=True, env=GIT_ENV)
    for path in files:
        target = clone / path.relative_to(site / "library")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    _commit(clone, "pages")
    return f"git+file://{bare}@main"


def commit_changes(work: Path, site: Path, changed: list[Path]) -> None:
    clone = work / "clone"
    for path in changed:
        shutil.copy2(path, clone / path.relative_to(site / "library"))
    _commit(clone, "1% changed")


def _commit(clone: Path, message: str) -> None:
    for args in (["add", "-A"], ["commit", "-q", "-m", message], ["push", "-q", "origin", "main"]):
        subprocess.run(["git", *args], cwd=clone, check=True, env=GIT_ENV)


class start_s3:
    def __init__(self):
        import boto3
        from moto.server import ThreadedMotoServer

        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.client = boto3.client("s3", endpoint_url=self.endpoint)
        self.client.create_bucket(Bucket="docs")

    def put_all(self, files: list[Path], site: Path) -> None:
        for path in files:
            self.client.put_object(Bucket="docs", Key=path.relative_to(site).as_posix(), Body=path.read_bytes())

    def stop(self) -> None:
        self.server.stop()


if __name__ == "__main__":
    main()
