from pathlib import Path

import pytest

import host.disk_check as disk_check
from host.disk_check import GB, Need, check, frameworks_in, shortfall


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["package", "docker/vllm:runtime"], {"vllm"}),
        (["test", "tests/vllm::"], {"vllm"}),
        (["test", "::"], {"vllm", "sglang"}),
        (["--tag=-engine", "test", "docker::"], {"vllm", "sglang"}),
        (["package", "docker/sglang:dev"], {"sglang"}),
        (["test", "tests/engines::"], {"vllm", "sglang"}),
        (["package", "docker/dynamo:runtime", "docker/epp:runtime"], set()),
        (["test", "src/python/dynamo_images::"], set()),
    ],
)
def test_which_engine_images_a_command_may_build(args: list[str], expected: set[str]) -> None:
    assert frameworks_in(args) == expected


def test_paths_on_one_filesystem_add_up(tmp_path: Path) -> None:
    free = disk_check.shutil.disk_usage(tmp_path).free
    (tmp_path / "a").mkdir()
    assert shortfall({tmp_path / "a": free // 2, tmp_path / "b/not-yet": free // 4}) == []
    [(where, needed, reported)] = shortfall({tmp_path / "a": free, tmp_path / "b/not-yet": free})
    assert needed == 2 * free
    assert reported <= free + GB


def test_a_cold_build_that_does_not_fit_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(disk_check, "image_exists", lambda framework: False)
    monkeypatch.setattr(disk_check, "docker_root", lambda: tmp_path)
    huge = disk_check.shutil.disk_usage(tmp_path).total
    monkeypatch.setattr(disk_check, "COLD_NEEDS", {"vllm": Need(caches=huge, docker=1)})
    message = check(["package", "docker/vllm:runtime"], tmp_path)
    assert message is not None and "\n" not in message
    assert message.startswith("pants: not enough disk for a cold build of docker/vllm (")
    assert f"{(huge + 1) / GB:.0f} GB needed" in message
    # What the caches already hold is not needed again.
    (tmp_path / ".pex").mkdir()
    (tmp_path / ".pex/wheel.zip").write_bytes(b"x" * 10_000)
    monkeypatch.setattr(disk_check, "COLD_NEEDS", {"vllm": Need(caches=10_000, docker=1)})
    assert check(["package", "docker/vllm:runtime"], tmp_path) is None
    # Not cold (the image exists) or not an engine image: no check.
    monkeypatch.setattr(disk_check, "image_exists", lambda framework: True)
    assert check(["package", "docker/vllm:runtime"], tmp_path) is None
    monkeypatch.setattr(disk_check, "image_exists", lambda framework: False)
    assert check(["package", "docker/dynamo:runtime"], tmp_path) is None
