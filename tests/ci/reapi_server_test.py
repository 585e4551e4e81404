"""build-support/remote_cache/reapi_server.py against a real BuildGrid and Redis.

What CI relies on: start is idempotent, status tells the truth, and the action cache and the CAS
survive a restart (BuildGrid's default in-memory action cache would not).
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from remote_cache import reapi_server

# Run by the server venv's python (grpc and the REAPI protos live there): store a blob and an
# ActionResult that names it, or read them back.
CLIENT = """
import hashlib, sys, grpc
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as rg
address, instance, mode = sys.argv[1:4]
data = b"dynamo-images remote cache test blob"
blob = re.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
action = re.Digest(hash=hashlib.sha256(b"test action").hexdigest(), size_bytes=11)
with grpc.insecure_channel(address) as channel:
    cas, ac = rg.ContentAddressableStorageStub(channel), rg.ActionCacheStub(channel)
    if mode == "write":
        cas.BatchUpdateBlobs(re.BatchUpdateBlobsRequest(instance_name=instance, requests=[
            re.BatchUpdateBlobsRequest.Request(digest=blob, data=data)]))
        result = re.ActionResult(exit_code=0, output_files=[re.OutputFile(path="out", digest=blob)])
        ac.UpdateActionResult(re.UpdateActionResultRequest(
            instance_name=instance, action_digest=action, action_result=result))
    else:
        result = ac.GetActionResult(re.GetActionResultRequest(
            instance_name=instance, action_digest=action))
        got = cas.BatchReadBlobs(re.BatchReadBlobsRequest(
            instance_name=instance, digests=[result.output_files[0].digest]))
        assert got.responses[0].data == data, got
    print("ok")
"""


def free_port_pair() -> int:
    """A port P such that P and P+1 (Redis) are free now."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port + 1)) != 0 and port < 65535:
                return port
    raise RuntimeError("no free port pair")


def client(server: reapi_server.Server, mode: str) -> None:
    python = server.venv() / "bin" / "python"
    argv = [str(python), "-c", CLIENT, server.address[len("grpc://") :], server.instance, mode]
    out = subprocess.run(argv, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.fixture
def server(tmp_path: Path):
    port = free_port_pair()
    argv = ["--dir", str(tmp_path / "reapi"), "--port", str(port)]
    yield reapi_server.Server((tmp_path / "reapi").resolve(), port, "test-instance"), argv
    reapi_server.main(["stop", *argv])


def test_start_stop_and_restart_keep_the_caches(server, monkeypatch, capsys) -> None:
    srv, argv = server
    monkeypatch.setenv("DYNAMO_REAPI_INSTANCE", srv.instance)

    assert reapi_server.main(["status", *argv]) == 1
    assert reapi_server.main(["start", *argv]) == 0
    assert capsys.readouterr().out.strip() == "started"
    # A second start finds it answering and leaves it alone.
    assert reapi_server.main(["start", *argv]) == 0
    assert capsys.readouterr().out.strip() == "running"
    assert reapi_server.main(["status", *argv]) == 0

    client(srv, "write")
    assert reapi_server.main(["stop", *argv]) == 0
    assert reapi_server.main(["status", *argv]) == 1
    assert not (srv.run / "buildgrid.pid").exists()

    assert reapi_server.main(["start", *argv]) == 0
    client(srv, "read")


def test_missing_python_is_one_clear_line(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DYNAMO_REAPI_PYTHON", "/nonexistent/python")
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(reapi_server.ServerError, match="CPython >= 3.13"):
        reapi_server.Server.find_python()
