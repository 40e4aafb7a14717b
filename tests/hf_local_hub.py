"""A local stand-in for the Hugging Face Hub's HTTP API, serving in-memory repositories.

The real Hub cannot be reached from the test machines. huggingface_hub talks to whatever
``HF_ENDPOINT`` names, so pointing it here runs the library's real download code (repo listing,
pattern filtering, HEAD metadata, ranged GET, local_dir layout) against files we control.
Only the endpoints that ``snapshot_download`` and ``hf_hub_download`` use are answered.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict
from urllib.parse import unquote, urlparse


class LocalHub:
    def __init__(self, repos: Dict[str, Dict[str, bytes]]):
        self.repos = repos
        self.requests: list = []  # (method, path) of every request, for assertions
        self.sha = {r: hashlib.sha1(r.encode()).hexdigest() for r in repos}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _send(self, code, payload=b"", headers=None, body=True):
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if body:
                    self.wfile.write(payload)

            def _serve(self, body):
                path = unquote(urlparse(self.path).path)
                hub.requests.append((self.command, path))
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "models"] and len(parts) >= 4:
                    repo = "/".join(parts[2:4])
                    if repo not in hub.repos:
                        return self._send(404, b'{"error":"Repository not found"}',
                                          {"X-Error-Code": "RepositoryNotFound"}, body)
                    if len(parts) >= 6 and parts[4] == "tree":  # recursive listing, one page
                        tree = [{"type": "file", "path": f, "size": len(d), "oid": hashlib.sha1(d).hexdigest(),
                                 "lfs": {"oid": hashlib.sha256(d).hexdigest(), "size": len(d), "pointerSize": 134}}
                                for f, d in sorted(hub.repos[repo].items())]
                        return self._send(200, json.dumps(tree).encode(), {"Content-Type": "application/json"}, body)
                    info = {"id": repo, "modelId": repo, "sha": hub.sha[repo], "private": False,
                            "siblings": [{"rfilename": f} for f in sorted(hub.repos[repo])]}
                    return self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, body)
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo, name = "/".join(parts[:2]), "/".join(parts[4:])
                    data = hub.repos.get(repo, {}).get(name)
                    if data is None:
                        return self._send(404, b"Entry not found", {"X-Error-Code": "EntryNotFound"}, body)
                    etag = hashlib.sha256(data).hexdigest()
                    headers = {"X-Repo-Commit": hub.sha[repo], "ETag": f'"{etag}"',
                               "Content-Type": "application/octet-stream"}
                    return self._send(200, data, headers, body)
                return self._send(404, b"not found", None, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "LocalHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
