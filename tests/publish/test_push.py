"""``hf-longrope2 push``: folder checks, the dry run, and the upload against a local fake Hub server."""

from __future__ import annotations

import base64
import json
import shutil
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import huggingface_hub
import pytest

from hf_longrope2 import cli
from hf_longrope2.publish.cards import export_with_card, write_model_card
from hf_longrope2.tiny.models import char_tokenizer, extended_pair, save_tiny_model

REPO = "my-org/tiny-longrope2"
JUNK = [".search-state/state.json", "checkpoint-2/model.safetensors", "__pycache__/rope.cpython-311.pyc",
        "config.json.tmp", ".README.tmp123.md"]


class FakeHub(BaseHTTPRequestHandler):
    """Just enough of the Hub API for create_repo, create_branch, validate-yaml, preupload and commit."""

    requests: list[dict]  # set on the subclass a fixture makes

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.requests.append({"method": "GET", "path": self.path})
        self._reply(404, {"error": f"not implemented: GET {self.path}"})

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        path = unquote(urlsplit(self.path).path)
        record = {"method": "POST", "path": path, "query": urlsplit(self.path).query,
                  "authorization": self.headers.get("Authorization")}
        self.requests.append(record)
        endpoint = f"http://{self.headers['Host']}"
        if path == "/api/repos/create":
            record["json"] = payload = json.loads(raw)
            return self._reply(200, {"url": f"{endpoint}/{payload['organization']}/{payload['name']}"})
        if path == "/api/validate-yaml":
            record["json"] = json.loads(raw)
            return self._reply(200, {"errors": [], "warnings": []})
        parts = path.split("/")  # /api/models/<org>/<name>/<verb>/<revision>
        if len(parts) >= 7 and parts[1:3] == ["api", "models"]:
            verb, repo = parts[5], f"{parts[3]}/{parts[4]}"
            if verb == "branch":
                record["json"] = json.loads(raw or b"{}")
                return self._reply(200, {})
            if verb == "preupload":
                record["json"] = payload = json.loads(raw)
                files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                         for f in payload["files"]]
                return self._reply(200, {"files": files})
            if verb == "commit":
                record["ndjson"] = [json.loads(line) for line in raw.splitlines() if line.strip()]
                return self._reply(200, {"commitUrl": f"{endpoint}/{repo}/commit/{'ab' * 20}",
                                         "commitOid": "ab" * 20, "pullRequestUrl": None})
        return self._reply(404, {"error": f"not implemented: POST {path}"})


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A fake Hub on localhost; HF_ENDPOINT points to it and no token is configured. Yields the request log."""
    requests: list[dict] = []
    handler = type("Handler", (FakeHub,), {"requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", url)  # read once at import time
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    yield requests
    server.shutdown()
    server.server_close()


def _extended_folder(path: Path, **save_kwargs) -> Path:
    """A tiny longrope2 Llama saved like `hf-longrope2 extend` does, with tokenizer and model card."""
    _, ext = extended_pair("llama")
    ext.save_pretrained(path, **save_kwargs)
    char_tokenizer().save_pretrained(path)
    write_model_card(path, base_model="HuggingFaceTB/SmolLM2-135M")
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return _extended_folder(tmp_path_factory.mktemp("push") / "tiny-longrope2")


@pytest.fixture
def model_dir(folder, tmp_path) -> Path:
    """A fresh copy of the extended folder, with junk that must not be uploaded."""
    out = Path(shutil.copytree(folder, tmp_path / "tiny-longrope2"))
    for name in JUNK:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("junk")
    return out


def _payload(model_dir: Path) -> list[str]:
    return sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*")
                  if p.is_file() and not any(p.relative_to(model_dir).as_posix() == j for j in JUNK))


def _dry_run_files(out: str) -> dict[str, int]:
    files = {}
    for line in out.splitlines()[1:]:
        size, name = line.split()[:2]
        if size != "skipped":
            files[name] = int(size.replace(",", ""))
    return files


def test_dry_run_of_a_search_output_lists_exactly_the_upload(tiny_search, hub, capsys, tmp_path):
    out = Path(shutil.copytree(tiny_search, tmp_path / "out"))
    (out / ".search-state").mkdir()
    (out / ".search-state" / "state.json").write_text("{}")
    (out / "checkpoint-5").mkdir()
    (out / "checkpoint-5" / "optimizer.pt").write_text("x")
    assert cli.main(["push", "--model", str(out), "--repo-id", REPO, "--dry-run", "--revision", "v1"]) == 0
    printed = capsys.readouterr().out
    files = _dry_run_files(printed)
    expected = {p.name for p in out.iterdir() if p.is_file()}
    assert set(files) == expected and {"README.md", "search_log.json", "rope.py", "model.safetensors"} <= expected
    assert all(files[name] == (out / name).stat().st_size for name in files)
    assert f"-> model repo {REPO} (revision v1, private False)" in printed.splitlines()[0]
    assert "skipped  .search-state/  (hidden folder)" in printed and "checkpoint-5/  (Trainer checkpoint)" in printed
    assert hub == []  # no network, no token needed


def test_dry_run_with_a_report_renders_the_card_but_writes_nothing(folder, hub, capsys, tmp_path):
    report = {"settings": {"dataset": "builtin:pydoc"},
              "models": {"tiny-longrope2": {"path": str(folder), "rope_type": "longrope2",
                                           "niah_mean": {"128": 0.5}}}}
    (tmp_path / "report.json").write_text(json.dumps(report))
    before = (folder / "README.md").read_text()
    assert cli.main(["push", "--model", str(folder), "--repo-id", REPO, "--dry-run", "--report",
                     str(tmp_path / "report.json")]) == 0
    printed = capsys.readouterr().out
    assert "README.md  (re-rendered card, not written)" in printed
    assert (folder / "README.md").read_text() == before and hub == []


@pytest.mark.parametrize("private, revision", [(True, "dev"), (False, None)])
def test_push_uploads_exactly_the_checked_files(model_dir, hub, monkeypatch, capsys, private, revision):
    monkeypatch.setenv("HF_TOKEN", "hf_fake_write_token")
    argv = ["push", "--model", str(model_dir), "--repo-id", REPO, "--commit-message", "tiny model"]
    argv += (["--private"] if private else []) + (["--revision", revision] if revision else [])
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert f"{REPO}/commit/{'ab' * 20}" in printed
    hub = [r for r in hub if r["method"] == "POST"]  # huggingface_hub may also GET its agent-harness registry
    assert all(r["authorization"] == "Bearer hf_fake_write_token" for r in hub)
    created = [r for r in hub if r["path"] == "/api/repos/create"]
    assert len(created) == 1 and created[0]["json"]["name"] == "tiny-longrope2"
    assert created[0]["json"]["organization"] == "my-org"
    assert created[0]["json"].get("visibility") == ("private" if private else None)  # else: the org's default
    branches = [r for r in hub if "/branch/" in r["path"]]
    assert [r["path"] for r in branches] == ([f"/api/models/{REPO}/branch/{revision}"] if revision else [])
    target = revision or "main"
    preupload = [r for r in hub if "/preupload/" in r["path"]]
    assert preupload and all(r["path"] == f"/api/models/{REPO}/preupload/{target}" for r in preupload)
    commits = [r for r in hub if "/commit/" in r["path"]]
    assert len(commits) == 1 and commits[0]["path"] == f"/api/models/{REPO}/commit/{target}"
    lines = commits[0]["ndjson"]
    assert lines[0] == {"key": "header", "value": {"summary": "tiny model", "description": ""}}
    uploaded = {line["value"]["path"]: base64.b64decode(line["value"]["content"]) for line in lines[1:]}
    assert all(line["key"] == "file" and line["value"]["encoding"] == "base64" for line in lines[1:])
    assert sorted(uploaded) == _payload(model_dir) and not set(uploaded) & set(JUNK)
    assert {"config.json", "model.safetensors", "modeling_longrope2.py", "rope.py", "tokenizer.json",
            "README.md"} <= set(uploaded)
    assert all(uploaded[name] == (model_dir / name).read_bytes() for name in uploaded)
    order = [r["path"].split("/")[-2] if r["path"].startswith("/api/models/") else r["path"] for r in hub]
    assert order.index("/api/repos/create") < order.index("preupload") < order.index("commit")


def test_push_with_a_report_writes_and_uploads_the_card(model_dir, hub, monkeypatch, tmp_path):
    from huggingface_hub import ModelCard

    monkeypatch.setenv("HF_TOKEN", "hf_fake_write_token")
    report = {"settings": {"dataset": "builtin:pydoc", "depths": [0.0, 1.0]},
              "models": {"base": {"rope_type": "default", "niah_mean": {"128": 0.0}},
                         "ext": {"path": str(model_dir), "rope_type": "longrope2", "niah_mean": {"128": 0.75}}}}
    (tmp_path / "report.json").write_text(json.dumps(report))
    assert cli.main(["push", "--model", str(model_dir), "--repo-id", REPO, "--report",
                     str(tmp_path / "report.json")]) == 0
    card = (model_dir / "README.md").read_text()
    assert f'from_pretrained("{REPO}", trust_remote_code=True)' in card
    assert ModelCard(card).data.eval_results[0].metric_value == 0.75
    commit = next(r for r in hub if "/commit/" in r["path"])
    readme = next(line for line in commit["ndjson"] if line["value"].get("path") == "README.md")
    assert base64.b64decode(readme["value"]["content"]).decode() == card


def test_no_token_is_an_error_before_any_request(model_dir, hub, capsys):
    before = (model_dir / "README.md").read_text()
    assert cli.main(["push", "--model", str(model_dir), "--repo-id", REPO, "--write-card"]) == 2
    err = capsys.readouterr().err
    assert "no Hugging Face token" in err and "HF_TOKEN" in err and "nothing was uploaded" in err
    assert hub == [] and (model_dir / "README.md").read_text() == before


def test_a_longrope_serving_export_passes(folder, hub, tmp_path, capsys):
    served = export_with_card(folder, tmp_path / "served")
    assert cli.main(["push", "--model", str(served), "--repo-id", REPO, "--dry-run"]) == 0
    files = _dry_run_files(capsys.readouterr().out)
    assert "config.json" in files and "README.md" in files and not any(f.endswith(".py") for f in files)


def _drop(name):
    return lambda d: (d / name).unlink()


def _edit_json(name, edit):
    def apply(d):
        data = json.loads((d / name).read_text())
        edit(data)
        (d / name).write_text(json.dumps(data))
    return apply


def _truncate(d):
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[:-100])


BREAKAGES = {
    "no config": (_drop("config.json"), "config.json is missing"),
    "default rope": (_edit_json("config.json", lambda c: c["rope_parameters"].update(rope_type="default")),
                     "rope_type 'default'"),
    "no auto_map": (_edit_json("config.json", lambda c: c.pop("auto_map")), "has no auto_map"),
    "no modeling file": (_drop("modeling_longrope2.py"), "modeling_longrope2.py is missing"),
    "no imported module": (_drop("windows.py"), "windows.py is missing"),
    "no weights": (_drop("model.safetensors"), "no *.safetensors weights"),
    "truncated weights": (_truncate, "model.safetensors is truncated"),
    "no tokenizer": (_drop("tokenizer.json"), "no tokenizer: expected tokenizer.json"),
    "no card": (_drop("README.md"), "README.md (the model card) is missing"),
    "card without metadata": (lambda d: (d / "README.md").write_text("# just a title\n"), "no metadata block"),
    "card with broken metadata": (lambda d: (d / "README.md").write_text("---\ntags: [a\n---\n# x\n"),
                                  "README.md has invalid card metadata"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_each_missing_piece_is_named(model_dir, hub, capsys, breakage):
    break_it, message = BREAKAGES[breakage]
    break_it(model_dir)
    assert cli.main(["push", "--model", str(model_dir), "--repo-id", REPO, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert message in err and "is not ready to push" in err and hub == []
    if breakage == "no card":
        assert "write_model_card" in err
    if breakage == "default rope":
        assert "longrope2 model" in err and "serving export" in err


def test_sharded_weights_need_every_shard(tmp_path, hub, capsys):
    out = _extended_folder(tmp_path / "sharded", max_shard_size="150KB")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1
    assert cli.main(["push", "--model", str(out), "--repo-id", REPO, "--dry-run"]) == 0
    assert set(shards) <= set(_dry_run_files(capsys.readouterr().out))
    (out / shards[-1]).unlink()
    assert cli.main(["push", "--model", str(out), "--repo-id", REPO, "--dry-run"]) == 2
    assert f"names shards that are missing: ['{shards[-1]}']" in capsys.readouterr().err


def test_a_plain_model_gets_every_problem_at_once(tmp_path, hub, capsys):
    save_tiny_model(tmp_path / "plain")
    assert cli.main(["push", "--model", str(tmp_path / "plain"), "--repo-id", REPO, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "rope_type 'default'" in err and "README.md (the model card) is missing" in err


@pytest.mark.parametrize("repo_id", ["no-namespace", "my-org/bad--name", "my-org/has space", "a/b/c"])
def test_bad_repo_ids_are_named(folder, hub, capsys, repo_id):
    assert cli.main(["push", "--model", str(folder), "--repo-id", repo_id, "--dry-run"]) == 2
    assert repr(repo_id) in capsys.readouterr().err and hub == []


def test_missing_folder_and_required_flags(tmp_path, hub, capsys):
    assert cli.main(["push", "--model", str(tmp_path / "nope"), "--repo-id", REPO, "--dry-run"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert cli.main(["push", "--model", str(tmp_path)]) == 2
    assert "--repo-id is required" in capsys.readouterr().err


DANGEROUS = {  # name -> the reason push gives for leaving it out
    "passwd_link": "outside the folder: never uploaded",
    "etc_link/": "outside the folder: never uploaded",
    "dangling": "dangling symlink",
    "inner_link/": "symlink to a folder: not followed",
    "fifo": "not a regular file",
    "id_rsa": "looks like a credential (by its name)",
    "credentials.json": "looks like a credential (by its name)",
    "server.pem": "looks like a credential (by its name)",
    ".env": "looks like a credential (by its name)",
    "training_args.bin": "pickled training arguments (may hold a token)",
}


def _add_dangerous_entries(model_dir: Path) -> None:
    import os

    (model_dir / "passwd_link").symlink_to("/etc/passwd")
    (model_dir / "etc_link").symlink_to("/etc")
    (model_dir / "dangling").symlink_to(model_dir / "gone")
    (model_dir / "inner").mkdir()
    (model_dir / "inner" / "extra.txt").write_text("inside the folder, reached through a symlinked folder")
    (model_dir / "inner_link").symlink_to(model_dir / "inner")
    os.mkfifo(model_dir / "fifo")
    for name in ("id_rsa", "credentials.json", "server.pem", ".env", "training_args.bin"):
        (model_dir / name).write_text("secret " + TOKEN)  # skipped by name, so never scanned nor refused


def test_push_uploads_only_regular_files_inside_the_folder_and_never_credentials(model_dir, hub, monkeypatch, capsys):
    clean = _payload(model_dir)
    _add_dangerous_entries(model_dir)
    assert cli.main(["push", "--model", str(model_dir), "--repo-id", REPO, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert set(_dry_run_files(printed)) == set(clean) | {"inner/extra.txt"}
    for name, reason in DANGEROUS.items():
        assert any(line.split()[:2] == ["skipped", name] and reason in line for line in printed.splitlines()), name
    monkeypatch.setenv("HF_TOKEN", "hf_fake_write_token")
    assert cli.main(["push", "--model", str(model_dir), "--repo-id", REPO]) == 0
    err = capsys.readouterr().err
    for name, reason in DANGEROUS.items():
        assert f"skipped {name} (" in err and reason in err, name
    commit = next(r for r in hub if "/commit/" in r.get("path", ""))
    uploaded = {line["value"]["path"] for line in commit["ndjson"][1:]}
    assert uploaded == set(clean) | {"inner/extra.txt"}


TOKEN = "hf_" + "a1B2" * 9  # token-shaped: hf_ + 36 letters and digits


def _text(name: str, text: str) -> Callable[[Path], str]:
    """Write `text` to `name` in the folder; the hit is expected at the token's line."""

    def place(folder: Path) -> str:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
        return f"{name} line {text[: text.index('hf_')].count(chr(10)) + 1}: a Hugging Face token"

    return place


def _in_card_metadata(folder: Path) -> str:
    card = (folder / "README.md").read_text()
    assert card.startswith("---\n")
    (folder / "README.md").write_text(f"---\nhub_token: {TOKEN}\n" + card[4:])
    return "README.md line 2: a Hugging Face token"


def _in_file_name(folder: Path) -> str:
    (folder / f"{TOKEN}.txt").write_text("harmless")
    return f"{TOKEN}.txt (file name): a Hugging Face token"


def _in_folder_name(folder: Path) -> str:
    (folder / f"backup-{TOKEN}").mkdir()
    (folder / f"backup-{TOKEN}" / "notes.txt").write_text("harmless")
    return f"backup-{TOKEN}/notes.txt (file name): a Hugging Face token"


def _in_safetensors_metadata(folder: Path) -> str:
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    save_file(load_file(path), path, metadata={"format": "pt", "note": f"pushed with {TOKEN} by ci"})
    return "model.safetensors (safetensors metadata): a Hugging Face token"


def _beyond_50_mb(folder: Path) -> str:
    with (folder / "big.bin").open("wb") as f:  # sparse: 60 MB on paper, a few KB on disk
        f.truncate(55 * 2**20)
        f.seek(55 * 2**20)
        f.write(b"\nlog: token " + TOKEN.encode() + b"\n")
        f.truncate(60 * 2**20)
    return "big.bin line 2: a Hugging Face token"


def _across_a_chunk_boundary(folder: Path) -> str:
    from hf_longrope2.publish.secrets import CHUNK_BYTES

    with (folder / "chunked.txt").open("wb") as f:
        f.write(b"first line\n")
        f.truncate(CHUNK_BYTES - 10)  # the token starts 10 bytes before the reader's first chunk ends
        f.seek(CHUNK_BYTES - 10)
        f.write(TOKEN.encode())
    return "chunked.txt line 2: a Hugging Face token"


def _private_key(folder: Path) -> str:
    (folder / "deploy.txt").write_text("deploy key:\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n")
    return "deploy.txt line 2: a private key"


TOKEN_PLACEMENTS: dict[str, Callable[[Path], str]] = {  # where -> place it, return the expected finding
    "start-of-line": _text("notes.txt", f"my notes\n{TOKEN}\n"),
    "after-assignment": _text("notes.txt", f"my notes\nHF_TOKEN={TOKEN}\n"),
    "mid-sentence": _text("notes.txt", f"To reproduce, log in with {TOKEN} and run the script.\n"),
    "json-value": _text("settings.json", f'{{\n  "repo": "me/x",\n  "token": "{TOKEN}"\n}}\n'),
    "yaml-value": _text("recipe/push.yaml", f"push:\n  repo: me/x\n  token: '{TOKEN}'\n"),
    "card-yaml-metadata": _in_card_metadata,
    "python-string": _text("upload.py", f'from huggingface_hub import HfApi\napi = HfApi(token="{TOKEN}")\n'),
    "url-credentials": _text("notes.md", f"clone https://me:{TOKEN}@huggingface.co/me/x\n"),
    "glued-to-a-word": _text("notes.txt", f"key=x{TOKEN}y\n"),
    "file-name": _in_file_name,
    "folder-name": _in_folder_name,
    "safetensors-metadata": _in_safetensors_metadata,
    "beyond-50-MB": _beyond_50_mb,
    "across-a-chunk-boundary": _across_a_chunk_boundary,
    "private-key": _private_key,
}


@pytest.mark.parametrize("where", list(TOKEN_PLACEMENTS))
def test_a_credential_anywhere_refuses_the_whole_push(where, model_dir, hub, monkeypatch, capsys):
    expected = TOKEN_PLACEMENTS[where](model_dir)
    assert cli.main(["push", "--model", str(model_dir), "--repo-id", REPO, "--dry-run"]) == 2
    dry = capsys.readouterr()
    monkeypatch.setenv("HF_TOKEN", "hf_fake_write_token")
    assert cli.main(["push", "--model", str(model_dir), "--repo-id", REPO]) == 2
    real = capsys.readouterr()
    assert hub == []  # not even create_repo
    assert dry.err == real.err and dry.out == real.out == ""  # --dry-run gives exactly the same verdict
    assert real.err.count("\n") == 1 and "Traceback" not in real.err
    assert f"refusing to push {model_dir}: 1 file(s) hold a credential: {expected}" in real.err
    assert "nothing was uploaded" in real.err and "https://huggingface.co/settings/tokens" in real.err
    assert TOKEN not in real.err.replace(f"{TOKEN}.txt", "").replace(f"backup-{TOKEN}", "")  # never echoed


def test_every_credential_is_named_at_once_and_an_explicit_file_list_is_scanned(model_dir, hub, monkeypatch, capsys):
    from hf_longrope2.publish.hub import push

    _text("a.txt", f"x\n{TOKEN}\n")(model_dir)
    _text("b.json", f'{{"t": "{TOKEN}"}}')(model_dir)
    assert cli.main(["push", "--model", str(model_dir), "--repo-id", REPO, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "2 file(s) hold a credential: a.txt line 2: a Hugging Face token (hf_...); b.json line 1: " in err
    monkeypatch.setenv("HF_TOKEN", "hf_fake_write_token")
    with pytest.raises(ValueError, match="b.json line 1"):
        push(model_dir, REPO, files=["config.json", "b.json"])  # the API's own list, not check_model_folder's
    assert hub == []


@pytest.mark.parametrize("chunk", [37, 64, 256])
def test_the_streaming_scan_finds_a_token_at_every_offset_across_chunk_boundaries(chunk, tmp_path, monkeypatch):
    from hf_longrope2.publish import secrets

    monkeypatch.setattr(secrets, "CHUNK_BYTES", chunk)
    for offset in range(0, 3 * chunk):
        prefix = b"".join(b"\n" if i % 7 == 0 else b"." for i in range(offset))
        path = tmp_path / "f.bin"
        path.write_bytes(prefix + TOKEN.encode() + b" tail\n" * 3)
        assert secrets.scan_file(path) == (prefix.count(b"\n") + 1, offset, "a Hugging Face token (hf_...)"), offset
    path.write_bytes(b"." * (3 * chunk) + b"hf_" + b"a" * 29 + b"\n")  # 29 after hf_: not token-shaped
    assert secrets.scan_file(path) is None
