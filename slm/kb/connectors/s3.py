"""An S3-compatible bucket as a source (`s3://bucket/prefix`, any endpoint: AWS, MinIO, Ceph): ids are keys
relative to the prefix, the ETag is the fingerprint, so a re-ingest lists the prefix and fetches only what
changed. Credentials come from boto3's own chain (environment, ~/.aws/credentials, instance role)."""

from __future__ import annotations

from urllib.parse import urlsplit

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

_INSTALL_HINT = "boto3 is not installed: pip install 'slm[s3]'"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise SourceError(f"{uri}: an S3 source looks like s3://bucket/prefix")
    prefix = parts.path.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"  # `s3://b/docs` means the folder docs/, never docs-old/
    return parts.netloc, prefix


class S3Source:
    page_size = 1000  # keys per listing request: S3's maximum

    def __init__(self, uri: str, limits: SourceLimits, *, endpoint_url: str | None = None):
        self.bucket, self.prefix = parse_s3_uri(uri)
        if endpoint_url:
            refuse_credentials(endpoint_url, "set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or ~/.aws/credentials")
        self.uri = f"s3://{self.bucket}/{self.prefix}"
        self.endpoint_url = endpoint_url
        self.limits = limits
        self._client = None
        self._etags: dict[str, str] = {}

    def _s3(self):
        if self._client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:
                raise SourceError(_INSTALL_HINT) from None
            # retries bounded, timeouts set: a store that is down fails the run, it does not hang it
            config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60)
            self._client = boto3.session.Session().client("s3", endpoint_url=self.endpoint_url, config=config)
        return self._client

    def _error(self, exc: Exception) -> str:
        # botocore's messages name the operation and the error code; they never carry the secret key.
        return f"{type(exc).__name__}: {exc}".splitlines()[0]

    def discover(self) -> Discovery:
        from botocore.exceptions import BotoCoreError, ClientError

        objects: dict[str, tuple[str, int]] = {}
        try:
            paginator = self._s3().get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix,
                                           PaginationConfig={"PageSize": self.page_size}):
                for obj in page.get("Contents", ()):
                    objects[obj["Key"]] = (obj.get("ETag", "").strip('"'), int(obj.get("Size", 0)))
        except (BotoCoreError, ClientError) as exc:
            raise SourceError(f"{self.uri}: cannot list the bucket: {self._error(exc)}") from None
        items: list[SourceItem] = []
        failed: list[FailedItem] = []
        for key, (etag, size) in sorted(objects.items()):
            rel = key[len(self.prefix) :]
            if not rel or key.endswith("/") or not is_document_name(rel) or not selected(rel, self.limits):
                continue
            too_large = check_size(rel, size, self.limits)
            if too_large:
                failed.append(too_large)
                continue
            side = objects.get(key + SIDECAR_SUFFIX)
            fingerprint = combined_fingerprint(etag, side[0]) if side else etag
            self._etags[rel] = etag
            items.append(SourceItem(rel, rel, fingerprint, location=f"s3://{self.bucket}/{key}", size=size))
            if side:
                self._etags[rel + SIDECAR_SUFFIX] = side[0]
        return Discovery(tuple(items), tuple(failed))

    def _get(self, rel: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.prefix + rel
        try:
            # IfMatch: the bytes are the version the listing fingerprinted, not a newer upload.
            response = self._s3().get_object(Bucket=self.bucket, Key=key, IfMatch=f'"{self._etags[rel]}"')
            length = int(response.get("ContentLength") or 0)
            if length > self.limits.max_bytes:
                response["Body"].close()
                raise DocumentError(check_size(rel, length, self.limits).reason)
            data = response["Body"].read(self.limits.max_bytes + 1)
        except (BotoCoreError, ClientError) as exc:
            raise DocumentError(f"cannot read s3://{self.bucket}/{key}: {self._error(exc)}") from None
        if len(data) > self.limits.max_bytes:
            raise DocumentError(check_size(rel, len(data), self.limits).reason)
        return data

    def fetch(self, item: SourceItem) -> Fetched:
        from slm.kb.documents import parse_sidecar

        data = self._get(item.id)
        side_rel = item.id + SIDECAR_SUFFIX
        if side_rel not in self._etags:
            return Fetched(item, data)
        raw = self._get(side_rel)
        return Fetched(item, data, parse_sidecar(raw, side_rel.rsplit("/", 1)[-1]), raw)

    def state(self) -> str | None:
        return None

    def close(self) -> None:
        self._client = None
