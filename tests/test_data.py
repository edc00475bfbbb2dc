"""The names.txt loader: data/names.txt, then $BACKPROP_NINJA_NAMES, then a verified download."""

import http.server
import random
import threading
from contextlib import contextmanager

import pytest
import torch

from grader import data
from grader.data import ENV_VAR, NamesDataError, names_path


@contextmanager
def http_server(payload: bytes):
    """Serve ``payload`` at http://127.0.0.1:<port>/names.txt; yield the URL and the request count."""
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/names.txt", hits
    finally:
        server.shutdown()
        server.server_close()


def unused_url() -> str:
    with http_server(b"") as (url, _):
        pass
    return url  # the server is gone: connections are refused


def test_finds_data_dir_copy_first(tmp_path, names_file):
    (tmp_path / "names.txt").write_bytes(names_file.read_bytes())
    elsewhere = tmp_path / "other.txt"
    assert names_path(tmp_path, {ENV_VAR: str(elsewhere)}, url=unused_url()) == tmp_path / "names.txt"


def test_uses_environment_variable_when_data_dir_is_empty(tmp_path, names_file):
    assert names_path(tmp_path, {ENV_VAR: str(names_file)}, url=unused_url()) == names_file
    assert not (tmp_path / "names.txt").exists()


def test_truncated_data_file_is_one_clear_error(tmp_path, names_file):
    lines = names_file.read_text().splitlines()[:1000]
    (tmp_path / "names.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(NamesDataError, match=r"truncated \(1000 of 32033 names\)") as err:
        names_path(tmp_path, {}, url=unused_url())
    assert ENV_VAR in str(err.value) and data.NAMES_SHA256 in str(err.value)


def test_wrong_file_in_environment_variable(tmp_path, names_file):
    wrong = tmp_path / "wrong.txt"
    wrong.write_text(names_file.read_text().replace("emma", "emmy", 1))
    with pytest.raises(NamesDataError, match="not the makemore names.txt"):
        names_path(tmp_path / "data", {ENV_VAR: str(wrong)}, url=unused_url())


def test_environment_variable_to_missing_file(tmp_path):
    with pytest.raises(NamesDataError, match=f"{ENV_VAR}=.*is not a file"):
        names_path(tmp_path, {ENV_VAR: str(tmp_path / "nope.txt")}, url=unused_url())


def test_download_is_verified_and_kept(tmp_path, names_file):
    with http_server(names_file.read_bytes()) as (url, hits):
        path = names_path(tmp_path / "data", {}, url=url)
    assert hits == ["/names.txt"]
    assert path == tmp_path / "data" / "names.txt"
    assert path.read_bytes() == names_file.read_bytes()
    with http_server(b"") as (url, hits):  # the next call finds the file and does not download
        names_path(tmp_path / "data", {}, url=url)
    assert hits == []


def test_corrupted_download_is_refused_and_not_left_behind(tmp_path, names_file):
    payload = names_file.read_bytes().replace(b"olivia", b"olivio", 1)
    with http_server(payload) as (url, hits):
        with pytest.raises(NamesDataError, match="the download from .* is not the makemore names.txt"):
            names_path(tmp_path, {}, url=url)
    assert hits == ["/names.txt"]
    assert list(tmp_path.iterdir()) == []  # neither names.txt nor a partial file


def test_unreachable_download_says_what_to_do(tmp_path):
    with pytest.raises(NamesDataError) as err:
        names_path(tmp_path, {}, url=unused_url(), timeout=5)
    message = str(err.value)
    assert "download" in message and ENV_VAR in message and str(tmp_path / "names.txt") in message
    assert list(tmp_path.iterdir()) == []


def test_lecture_split():
    ds = data.load_dataset()
    assert (len(ds.Xtr), len(ds.Xdev), len(ds.Xte)) == (182625, 22655, 22866)
    assert ds.vocab_size == 27 and ds.block_size == 3 and ds.itos[0] == "."
    # the same shuffle as the lecture's global random.seed(42); random.shuffle(words)
    words = list(ds.words)
    random.seed(42)
    random.shuffle(words)
    Xtr, Ytr = data.build_dataset(words[: int(0.8 * len(words))], ds.stoi)
    assert torch.equal(Xtr, ds.Xtr) and torch.equal(Ytr, ds.Ytr)


def test_each_load_gets_its_own_tensors():
    first = data.load_dataset()
    first.Xtr.zero_()
    assert data.load_dataset().Xtr.any()
