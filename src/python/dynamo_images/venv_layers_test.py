import base64
import hashlib
import json
from pathlib import Path

import pytest

from dynamo_images.venv_layers import (
    FIXED_MTIME,
    MAX_LAYER_BYTES,
    SLOT_BUDGET,
    VENV_SLOT,
    assign_slots,
    main,
    parse_groups,
    slot_names,
    split_into_slots,
    tar_bytes,
)

# The form pants-plugins/macros.py writes (VENV_LAYER_GROUPS, engine "vllm").
SPEC = "cuda:2:nvidia-*,cuda-* torch:1:torch engine:1:vllm third-party:2:* dynamo:1:ai-dynamo"


def install(site: Path, dist: str, files: dict[str, bytes], version: str = "1.0") -> None:
    """Lay out an installed distribution the way pip/pex do, with a RECORD."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    rows = []
    for rel, data in {**files, f"{info.name}/METADATA": b"Name: " + dist.encode()}.items():
        path = (site / rel).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{rel},sha256={digest},{len(data)}")
    rows.append(f"{info.name}/RECORD,,")
    (info / "RECORD").write_text("\n".join(rows) + "\n")


def make_venv(root: Path) -> Path:
    venv = root / "venv"
    site = venv / "lib/python3.11/site-packages"
    install(site, "nvidia-cublas", {"nvidia/cublas/lib/libcublas.so": b"c" * 10})
    install(site, "torch", {"torch/__init__.py": b"t"}, "2.13.0")
    install(site, "vllm", {"vllm/__init__.py": b"v", "../../../bin/vllm": b"#!"}, "0.31.0")
    install(site, "requests", {"requests/__init__.py": b"r"})
    install(site, "ai-dynamo", {"dynamo/frontend/__init__.py": b"d"}, "1.6.1")
    # Bytecode compiled after the install (not in RECORD) goes with its module.
    (site / "torch/__pycache__").mkdir()
    (site / "torch/__pycache__/__init__.cpython-311.pyc").write_bytes(b"pyc")
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (venv / "bin/python").symlink_to("/usr/bin/python3.11")
    return venv


def test_each_distribution_lands_in_its_group(tmp_path: Path) -> None:
    venv = make_venv(tmp_path)
    groups = parse_groups(SPEC)
    manifests = split_into_slots(venv, tmp_path / "layers", groups)
    layers = tmp_path / "layers"
    site = "lib/python3.11/site-packages"
    assert (layers / "cuda-1" / site / "nvidia/cublas/lib/libcublas.so").exists()
    assert (layers / "torch" / site / "torch/__init__.py").exists()
    assert (layers / "torch" / site / "torch/__pycache__/__init__.cpython-311.pyc").exists()
    assert (layers / "engine/bin/vllm").exists()
    assert (layers / "third-party-1" / site / "requests/__init__.py").exists()
    assert (layers / "dynamo" / site / "dynamo/frontend/__init__.py").exists()
    # What no distribution owns is the last slot; the venv is left empty.
    assert (layers / VENV_SLOT / "pyvenv.cfg").exists()
    assert (layers / VENV_SLOT / "bin/python").is_symlink()
    assert not venv.exists() or not any(venv.rglob("*"))
    assert manifests["engine"]["distributions"] == {"vllm": "0.31.0"}
    assert manifests["cuda-2"]["distributions"] == {}
    assert manifests[VENV_SLOT]["paths"] == ["bin/python", "pyvenv.cfg"]
    # Every slot carries its manifest (for the layer report), empty slots too.
    assert sorted(p.name for p in layers.iterdir()) == sorted(slot_names(groups))
    # Fixed mtimes: the same distributions make the same slot tree, whenever they are unpacked.
    assert {p.lstat().st_mtime for p in layers.rglob("*")} == {FIXED_MTIME}
    on_disk = json.loads((layers / "torch/.dynamo-layers/torch.json").read_text())
    assert on_disk["distributions"] == {"torch": "2.13.0"}
    torch_files = [p for p in (layers / "torch").rglob("*") if p.is_file()]
    assert on_disk["bytes"] == sum(
        tar_bytes(p) for p in torch_files if ".dynamo-layers" not in p.parts
    )


def test_assignment_depends_only_on_the_installed_set() -> None:
    """Another engine's image with the same CUDA wheels gets the same CUDA slots."""
    groups = parse_groups(SPEC.replace("vllm", "sglang"))
    cuda = {"nvidia-cublas": 900_000_000, "nvidia-cudnn": 800_000_000, "cuda-bindings": 10}
    vllm_like = assign_slots({**cuda, "vllm": 5, "ray": 7}, parse_groups(SPEC))
    sglang_like = assign_slots({**cuda, "sglang": 5, "orjson": 1}, groups)
    for slot in ("cuda-1", "cuda-2", "torch"):
        assert vllm_like[slot] == sglang_like[slot]
    # Name order, first slot with room: cublas does not fit beside cudnn.
    assert vllm_like["cuda-1"] == ["cuda-bindings", "nvidia-cublas"]
    assert vllm_like["cuda-2"] == ["nvidia-cudnn"]
    assert sglang_like["engine"] == ["sglang"]


def test_a_group_that_outgrows_its_slots_is_an_error() -> None:
    half = MAX_LAYER_BYTES // 2 + 1
    with pytest.raises(SystemExit, match="group 'cuda' holds 2.25 GB, more than its 2 slots"):
        assign_slots({"nvidia-a": half, "nvidia-b": half, "nvidia-c": half}, parse_groups(SPEC))
    with pytest.raises(SystemExit, match="torch alone is 1.60 GB, over the 1.5 GB layer limit"):
        assign_slots({"torch": 1_600_000_000}, parse_groups(SPEC))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("cuda:x:nvidia-*", "bad group 'cuda:x:nvidia-\\*'"),
        ("cuda:1:nvidia-*", "exactly one group must take the rest"),
        ("venv:1:* cuda:1:x", "bad group 'venv:1:\\*'"),
        ("a:0:*", "bad group 'a:0:\\*'"),
    ],
)
def test_bad_group_specs(spec: str, message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        parse_groups(spec)


def test_the_rest_slot_is_the_one_the_image_definition_copies() -> None:
    # Runs at the root of a copy of the repository (//:project-files has the prelude).
    prelude = Path("pants-plugins/macros.py").read_text()
    assert f'VENV_REST_SLOT = "{VENV_SLOT}"' in prelude
    # The files stage gives our code and the SBOM the slots' mtime.
    assert f"FIXED_MTIME = {FIXED_MTIME}" in prelude


def test_slots_can_hold_the_venvs_whole_path(tmp_path: Path) -> None:
    """Copied to /, a slot brings its parent folders too, with the fixed mtime."""
    venv = make_venv(tmp_path)
    split_into_slots(venv, tmp_path / "layers", parse_groups(SPEC), Path("opt/dynamo/venv"))
    torch = tmp_path / "layers/torch"
    assert (torch / "opt/dynamo/venv/lib/python3.11/site-packages/torch/__init__.py").exists()
    assert (torch / "opt/dynamo/venv/.dynamo-layers/torch.json").exists()
    assert sorted(p.name for p in torch.iterdir()) == ["opt"]
    assert {p.lstat().st_mtime for p in torch.rglob("*")} == {FIXED_MTIME}
    assert (tmp_path / "layers/venv/opt/dynamo/venv/pyvenv.cfg").exists()


def test_main_prints_one_line_per_slot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    venv = make_venv(tmp_path)
    assert main([str(venv), str(tmp_path / "layers"), "--groups", SPEC]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(slot_names(parse_groups(SPEC)))
    assert out[0].startswith("venv_layers: cuda-1")


def test_a_file_two_distributions_list_stays_in_the_venv_slot(tmp_path: Path) -> None:
    """pex venv --collisions-ok keeps one copy of a file two distributions ship, so its content
    depends on the other distribution: it and the listing distributions' RECORDs go to the venv's
    own slot, and each distribution's slot stays the same whichever the other is."""
    venv = make_venv(tmp_path)
    site = venv / "lib/python3.11/site-packages"
    install(site, "torch-c-dlpack-ext", {"build_backend.py": b"one", "tcd/__init__.py": b"x"})
    install(site, "flashinfer-python", {"build_backend.py": b"two", "flashinfer/x.py": b"f"})
    manifests = split_into_slots(venv, tmp_path / "layers", parse_groups(SPEC))
    layers = tmp_path / "layers"
    rel = "lib/python3.11/site-packages"
    [owner] = [slot for slot, m in manifests.items() if "torch-c-dlpack-ext" in m["distributions"]]
    assert (layers / owner / rel / "tcd/__init__.py").exists()
    assert not (layers / owner / rel / "build_backend.py").exists()
    assert (layers / VENV_SLOT / rel / "build_backend.py").exists()
    for info in ("torch_c_dlpack_ext-1.0.dist-info", "flashinfer_python-1.0.dist-info"):
        assert (layers / VENV_SLOT / rel / info / "RECORD").exists()
        assert f"{rel}/{info}/RECORD" in manifests[VENV_SLOT]["paths"]


def test_slots_are_filled_by_what_files_cost_in_a_tar(tmp_path: Path) -> None:
    """A layer is a tar (512-byte headers, data in 512-byte blocks), so many small files cost
    more than their bytes: slots are filled against that, under the limit with room for folders."""
    for size, cost in ((0, 512), (1, 1024), (512, 1024), (513, 1536)):
        (tmp_path / "f").write_bytes(b"x" * size)
        assert tar_bytes(tmp_path / "f") == cost
    just_over = SLOT_BUDGET // 2 + 1
    slots = assign_slots({"nvidia-a": just_over, "nvidia-b": just_over}, parse_groups(SPEC))
    assert (slots["cuda-1"], slots["cuda-2"]) == (["nvidia-a"], ["nvidia-b"])
    assert SLOT_BUDGET < MAX_LAYER_BYTES
