"""A Git repository at a ref (`git+https://host/docs.git@main`, `git+file:///srv/docs.git@v2`), read through
the git CLI from a mirror kept in the KB: the commit is the version, a file's blob id its fingerprint, so
only paths whose blob changed between two commits are fetched again."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from slm.kb.connectors.base import (
    SIDECAR_SUFFIX,
    Discovery,
    FailedItem,
    Fetched,
    SourceItem,
    SourceLimits,
    check_size,
    combined_fingerprint,
    is_document_name,
    refuse_credentials,
    selected,
)
from slm.errors import DocumentError, SourceError

# Transports git may use for a source: no `ext::` (runs a command) and no `fd::`.
_ALLOWED_PROTOCOLS = "https:http:ssh:git:file"
_TIMEOUT_S = 600  # a clone of a large docs repository on a slow link; a hung transport still ends
_SYMLINK, _SUBMODULE = "120000", "160000"


def parse_git_uri(uri: str) -> tuple[str, str]:
    """(`git clone` URL, ref) from `git+URL@ref`; the ref defaults to HEAD. `@` inside the URL's
    authority (`git+ssh://git@host/…`) is not a ref separator."""
    if not uri.startswith("git+"):
        raise SourceError(f"{uri}: a Git source looks like git+https://host/repo.git@main")
    url = uri[len("git+") :]
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise SourceError(f"{uri}: a Git source looks like git+https://host/repo.git@main")
    authority, slash, path = rest.partition("/")
    ref = "HEAD"
    if "@" in path:
        path, _, ref = path.rpartition("@")
    url = f"{scheme}://{authority}{slash}{path}"
    if not ref or ref.startswith("-"):
        raise SourceError(f"{uri}: '{ref}' is not a usable ref")
    return url, ref


def _git_env() -> dict[str, str]:
    env = dict(os.environ)
    # Never wait for a password on a terminal: credentials come from git's own helpers or the environment.
    env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_ALLOW_PROTOCOL": _ALLOWED_PROTOCOLS, "GIT_ASKPASS": env.get("GIT_ASKPASS", "true")})
    return env


class GitSource:
    def __init__(self, uri: str, limits: SourceLimits, *, cache_dir: Path):
        self.url, self.ref = parse_git_uri(uri)
        refuse_credentials(self.url, "use a git credential helper or GIT_ASKPASS in the environment")
        self.uri = uri
        self.limits = limits
        key = hashlib.sha256(self.url.encode("utf-8")).hexdigest()[:16]
        self.mirror = Path(cache_dir) / f"git-{key}.git"
        self.commit: str | None = None
        self._with_sidecar: set[str] = set()

    def _git(self, *args: str, cwd: Path | None = None, binary: bool = False) -> bytes:
        try:
            done = subprocess.run(
                ["git", *args], cwd=cwd, env=_git_env(), capture_output=True, timeout=_TIMEOUT_S, check=False
            )
        except FileNotFoundError:
            raise SourceError("git is not installed: apt-get install git") from None
        except subprocess.TimeoutExpired:
            raise SourceError(f"{self.url}: git {args[0]} took longer than {_TIMEOUT_S} s") from None
        if done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise SourceError(f"{self.url}: git {args[0]} failed: {message[-1] if message else done.returncode}")
        return done.stdout

    def _update_mirror(self) -> None:
        if (self.mirror / "HEAD").is_file():
            self._git("--git-dir", str(self.mirror), "fetch", "--quiet", "--prune", "--force", "origin")
            return
        self.mirror.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.mirror.with_name(self.mirror.name + ".partial")
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp)
        self._git("clone", "--quiet", "--mirror", "--", self.url, str(tmp))
        tmp.rename(self.mirror)  # a clone killed half-way is never taken for a mirror

    def discover(self) -> Discovery:
        self._update_mirror()
        git_dir = ("--git-dir", str(self.mirror))
        try:
            self.commit = self._git(*git_dir, "rev-parse", "--verify", "--quiet", "--end-of-options",
                                    f"{self.ref}^{{commit}}").decode().strip()
        except SourceError:
            raise SourceError(f"{self.uri}: no branch, tag or commit '{self.ref}' in {self.url}") from None
        listing = self._git(*git_dir, "ls-tree", "-r", "-l", "-z", "--full-tree", self.commit)
        entries: dict[str, tuple[str, str, int | None]] = {}
        for record in listing.split(b"\0"):
            if not record:
                continue
            meta, _, raw_path = record.partition(b"\t")
            mode, kind, blob, size = meta.decode().split()
            path = raw_path.decode("utf-8", "surrogateescape")
            if kind != "blob" or mode in (_SYMLINK, _SUBMODULE):
                continue  # a symlink's target may lie outside the repository; a submodule is another source
            entries[path] = (blob, mode, int(size) if size.isdigit() else None)
        items: list[SourceItem] = []
        failed: list[FailedItem] = []
        for path, (blob, _mode, size) in sorted(entries.items()):
            if not is_document_name(path) or not selected(path, self.limits):
                continue
            too_large = check_size(path, size, self.limits)
            if too_large:
                failed.append(too_large)
                continue
            side = entries.get(path + SIDECAR_SUFFIX)
            fingerprint = combined_fingerprint(blob, side[0]) if side else blob
            if side:
                self._with_sidecar.add(path)
            items.append(SourceItem(path, path, fingerprint, size=size))
        return Discovery(tuple(items), tuple(failed), version=self.commit)

    def _blob(self, path: str) -> bytes | None:
        try:
            return self._git("--git-dir", str(self.mirror), "cat-file", "blob", f"{self.commit}:{path}")
        except SourceError:
            return None

    def fetch(self, item: SourceItem) -> Fetched:
        from slm.kb.documents import parse_sidecar

        if self.commit is None:
            raise DocumentError("fetch before discover")
        data = self._blob(item.id)
        if data is None:
            raise DocumentError(f"cannot read {item.id} at {self.commit[:12]}")
        side = self._blob(item.id + SIDECAR_SUFFIX) if item.id in self._with_sidecar else None
        metadata = parse_sidecar(side, item.id.rsplit("/", 1)[-1] + SIDECAR_SUFFIX) if side else {}
        return Fetched(item, data, metadata, side or b"")

    def state(self) -> str | None:
        return self.commit

    def close(self) -> None:
        pass
