"""C2PA content credentials on finished MP4 files (recordings, `render` output), with c2pa-python.

    signing = C2paSigning.from_config(config)        # None when no certificate is configured
    sign_mp4(Path("show.mp4"), signing, aigc={...})   # the file is replaced by its signed copy

The manifest says the video was created by a trained algorithm (IPTC digital source type
trainedAlgorithmicMedia, what YouTube and TikTok read as "AI-generated") and carries the AIGC fields of
GB 45438-2025 as an assertion of its own. The user brings the certificate: a PEM chain (the signing
certificate first, then its issuers up to, not necessarily including, a root) and the private key; C2PA
validators check it against their trust lists (a certificate from a C2PA-conforming CA shows as trusted,
a private CA's as valid but untrusted). No time-stamp authority is asked (nothing is fetched over the
network): the signature holds while the certificate is valid.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
ALGORITHMS = ("es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519")
AI_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
AIGC_ASSERTION = "cn.gb45438.aigc"
GENERATOR = {"name": "avatar-engine", "version": "0.1.0"}


def _c2pa() -> Any:
    try:
        import c2pa
    except ImportError as e:
        raise ValueError("C2PA signing needs c2pa-python: pip install 'avatar-engine[c2pa]'") from e
    return c2pa


@dataclass(frozen=True)
class C2paSigning:
    cert_pem: bytes
    key_pem: bytes
    alg: str = "es256"

    @classmethod
    def load(cls, cert: str | Path, key: str | Path, alg: str = "es256") -> C2paSigning:
        """From PEM files; checked at once (ValueError naming what is wrong): a bad pair is refused at start."""
        if alg.lower() not in ALGORITHMS:
            raise ValueError(f"c2pa_alg {alg!r}: one of {', '.join(ALGORITHMS)}")
        try:
            signing = cls(Path(cert).read_bytes(), Path(key).read_bytes(), alg.lower())
        except OSError as e:
            raise ValueError(f"C2PA certificate or key: {e}") from e
        signing.check(str(cert))
        signing.signer().close()
        return signing

    def check(self, name: str = "c2pa_cert") -> None:
        """The chain parses, its first certificate is a signer's (not a CA's) and the key is its key: c2pa's own
        signer takes anything and fails only when it signs."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        try:
            chain = x509.load_pem_x509_certificates(self.cert_pem)
            key = serialization.load_pem_private_key(self.key_pem, password=None)
        except ValueError as e:
            raise ValueError(f"{name}: not a PEM certificate chain and unencrypted PEM private key ({e})") from e
        pem = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        if chain[0].public_key().public_bytes(*pem) != key.public_key().public_bytes(*pem):
            raise ValueError(f"{name}: the private key is not the key of the chain's first (signing) certificate")
        try:
            if chain[0].extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
                raise ValueError(f"{name}: the first certificate is a CA's; C2PA signs with an end-entity certificate")
        except x509.ExtensionNotFound:
            pass

    @classmethod
    def from_config(cls, config: Any) -> C2paSigning | None:
        cert, key = getattr(config, "c2pa_cert", None), getattr(config, "c2pa_key", None)
        if not cert or not key:
            return None
        return _loaded(str(cert), str(key), getattr(config, "c2pa_alg", "es256"))

    def signer(self) -> Any:
        c2pa = _c2pa()
        try:
            return c2pa.Signer.from_info(c2pa.C2paSignerInfo(self.alg, self.cert_pem, self.key_pem, None))
        except c2pa.C2paError as e:
            raise ValueError(f"C2PA certificate or key refused: {e}") from e


@functools.lru_cache(maxsize=8)
def _loaded(cert: str, key: str, alg: str) -> C2paSigning:
    """Read and checked once per process (streams are made on the event loop); a new certificate takes a restart."""
    return C2paSigning.load(cert, key, alg)


def manifest(title: str, aigc: dict[str, str] | None = None) -> dict[str, Any]:
    assertions: list[dict[str, Any]] = [
        {"label": "c2pa.actions", "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": AI_SOURCE_TYPE,
                                                        "softwareAgent": GENERATOR}]}}]
    if aigc:
        assertions.append({"label": AIGC_ASSERTION, "data": aigc})
    return {"claim_generator_info": [GENERATOR], "title": title, "format": "video/mp4", "assertions": assertions}


def sign_mp4(path: Path, signing: C2paSigning, aigc: dict[str, str] | None = None) -> None:
    """Replace the MP4 at path by a copy with a signed C2PA manifest (ValueError on failure; the file is then left
    as it was)."""
    c2pa = _c2pa()
    tmp = path.with_name(f".{path.name}.c2pa.tmp")
    try:
        with c2pa.Builder(manifest(path.name, aigc)) as builder, signing.signer() as signer, \
                open(path, "rb") as source, open(tmp, "w+b") as dest:
            builder.sign(signer, "video/mp4", source, dest)
        os.replace(tmp, path)
    except c2pa.C2paError as e:
        raise ValueError(f"{path}: C2PA signing failed: {e}") from e
    finally:
        tmp.unlink(missing_ok=True)


def signer_for(signing: C2paSigning | None, aigc: dict[str, str] | None) -> Any:
    """An Mp4Sink on_finished that signs the finished file, logging (not raising) a failure: a recording is kept
    unsigned rather than lost."""
    if signing is None:
        return None

    def finished(path: Path) -> None:
        try:
            sign_mp4(path, signing, aigc)
            log.info("%s: C2PA content credentials signed", path)
        except Exception:
            log.exception("%s: C2PA signing failed; the file is kept unsigned", path)

    return finished


def read_manifest(path: Path, trust_anchors_pem: str | None = None) -> tuple[str | None, dict[str, Any] | None]:
    """(validation state: Invalid, Valid or Trusted; the active manifest) of a file, as C2PA's reader sees it;
    trust_anchors_pem: extra roots to trust (a private CA's)."""
    c2pa = _c2pa()
    context = None
    if trust_anchors_pem:
        context = c2pa.Context(c2pa.Settings.from_dict({"verify": {"verify_trust": True},
                                                        "trust": {"trust_anchors": trust_anchors_pem}}))
    with c2pa.Reader(str(path), context=context) if context is not None else c2pa.Reader(str(path)) as reader:
        store = json.loads(reader.json())
        return reader.get_validation_state(), store.get("manifests", {}).get(store.get("active_manifest"))
