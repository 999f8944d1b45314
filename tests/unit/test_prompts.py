import wave
from pathlib import Path

import pytest

from siaga112.prompts import PROMPTS, build_prompts, main


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    outdir = tmp_path_factory.mktemp("sounds")
    return outdir, build_prompts(outdir)


def test_every_prompt_is_an_8khz_mono_16bit_wav_of_some_length(built) -> None:
    outdir, made = built
    assert sorted(made) == sorted(PROMPTS)
    for name in PROMPTS:
        with wave.open(str(outdir / f"{name}.wav")) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2), name
            assert w.getnframes() / 8000 > 0.5, f"{name} is too short to be speech"


def test_a_second_run_makes_nothing_and_a_changed_text_remakes_only_that_prompt(built) -> None:
    outdir, _ = built
    assert build_prompts(outdir) == []
    changed = dict(PROMPTS, goodbye="Terima kasih.")
    assert build_prompts(outdir, changed) == ["goodbye"]
    assert build_prompts(outdir) == ["goodbye"]  # back to the shipped text


def test_a_deleted_file_is_made_again(built) -> None:
    outdir, _ = built
    (outdir / "welcome.wav").unlink()
    assert main([str(outdir)]) == 0
    assert (outdir / "welcome.wav").is_file()
