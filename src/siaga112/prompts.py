"""The voice prompts, in Bahasa Indonesia, generated at build time with espeak-ng and sox.

``python -m siaga112.prompts OUTDIR`` writes one ``NAME.wav`` per prompt: 8 kHz, mono, 16-bit
signed PCM, which Asterisk plays as slin without transcoding (``sound:OUTDIR/NAME``). It is
idempotent: a prompt is made again only when its text or the synthesis settings changed (a
manifest beside the files keeps one digest per prompt). espeak-ng and sox are installed with
apt when missing.

Numbers a caller must hear as digits are written as words ("satu satu dua" for 112): espeak-ng
would read "112" as "seratus dua belas".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

VOICE = "id"
SPEED = 140  # words per minute: slower than espeak's 175, for a caller under stress
RATE = 8000
MANIFEST = ".prompts.json"

PROMPTS: dict[str, str] = {
    # To the citizen, once answered.
    "welcome": (
        "Anda terhubung dengan layanan darurat satu satu dua. "
        "Mohon tetap tenang, petugas kami akan segera menjawab."
    ),
    # To the citizen, every queue announce interval.
    "please-wait": "Mohon tetap di saluran, petugas kami akan segera menjawab.",
    # To a blocked caller, with the way through said first (a caller in danger need not listen
    # to the end) and again last. The daemon waits for 5 from the first word to the end of the
    # prompt plus screening.bypass_wait.
    "blocked": (
        "Jika ini keadaan darurat, tekan 5. "
        "Nomor Anda diblokir sementara karena penyalahgunaan layanan satu satu dua. "
        "Jika ini keadaan darurat, tekan 5 sekarang."
    ),
    # To a blocked caller in strict mode: no way through.
    "blocked-strict": (
        "Nomor Anda diblokir sementara karena penyalahgunaan layanan satu satu dua."
    ),
    # To a caller who has been silent: the silent emergency path.
    "silent-check": ("Jika Anda membutuhkan bantuan dan tidak dapat berbicara, tekan 5 dua kali."),
    # To citizen and operator while an agency's duty line rings.
    "connecting-agency": "Mohon tunggu, kami sedang menghubungkan dengan instansi terkait.",
    # To the operator: neither duty line of the agency answered.
    "agency-failed": "Instansi tidak dapat dihubungi. Silakan coba lagi.",
    # To the bridge: the agency is on the call.
    "agency-joined": "Instansi telah bergabung.",
    # To the agency's duty line when it answers.
    "accept-case": "Panggilan darurat satu satu dua. Tekan 1 untuk menerima kasus ini.",
    # To an operator after a desk-phone code.
    "operator-logged-in": "Anda telah masuk. Selamat bertugas.",
    "operator-logged-out": "Anda telah keluar.",
    "operator-paused": "Status Anda sekarang jeda.",
    "operator-resumed": "Anda kembali siap menerima panggilan.",
    "unknown-code": "Kode tidak dikenal.",
    "goodbye": "Terima kasih. Sampai jumpa.",
}


def _digest(text: str) -> str:
    recipe = json.dumps({"text": text, "voice": VOICE, "speed": SPEED, "rate": RATE})
    return hashlib.sha256(recipe.encode()).hexdigest()


def _synthesise(text: str, target: Path) -> None:
    """espeak-ng to a WAV, sox to 8 kHz mono 16-bit, written atomically to target."""
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        raw = Path(tmp) / "raw.wav"
        out = Path(tmp) / "out.wav"
        _run(["espeak-ng", "-v", VOICE, "-s", str(SPEED), "-w", str(raw), text])
        _run(
            ["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer",
             str(out), "gain", "-n", "-3"]
        )  # fmt: skip
        os.replace(out, target)


TOOLS = ("espeak-ng", "sox")  # commands, and the Debian packages that bring them


class MissingTool(RuntimeError):
    """A tool the prompts are made with is not installed."""


def require_tools() -> None:
    """Raise MissingTool naming every tool that is missing (this never installs anything)."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise MissingTool(
            f"cannot make the voice prompts: {', '.join(missing)} not installed (Debian: "
            f"apt-get install {' '.join(missing)})")


def _run(argv: list[str]) -> None:
    require_tools()
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({result.returncode}): {result.stderr.strip()}")


def build_prompts(outdir: Path, prompts: Mapping[str, str] = PROMPTS) -> list[str]:
    """Write every prompt that is missing or out of date into outdir; return the names made."""
    outdir.mkdir(parents=True, exist_ok=True)
    manifest_path = outdir / MANIFEST
    try:
        manifest: dict[str, str] = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        manifest = {}
    made = []
    for name, text in prompts.items():
        target = outdir / f"{name}.wav"
        digest = _digest(text)
        if target.is_file() and manifest.get(name) == digest:
            continue
        _synthesise(text, target)
        manifest[name] = digest
        made.append(name)
        log.info("prompt_made", name=name, path=str(target))
    if made:
        manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m siaga112.prompts",
        description="Generate Siaga112's Indonesian voice prompts as 8 kHz mono WAV.",
    )
    parser.add_argument("outdir", type=Path, help="directory for NAME.wav (created if missing)")
    args = parser.parse_args(argv)
    try:
        made = build_prompts(args.outdir)
    except MissingTool as exc:
        print(f"siaga112.prompts: {exc}", file=sys.stderr)
        return 1
    print(f"{len(made)} made, {len(PROMPTS) - len(made)} up to date in {args.outdir}",
          file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
