"""API keys and scopes: every route tried without a key, with a wrong one, with the wrong scope
and with the right one; the keys file; the command line's refusal to run open by accident."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from engine.checkout import Checkout
from engine.cli import DEMO_KEYS, main
from engine.policy import load_rule_set
from engine.reload import RuleReloader
from engine.service import create_app
from engine.service.auth import ApiKeys, KeyEntry, KeyFileError, digest
from engine.sources.snapshot import SnapshotSource
from tests.helpers import DEMO_AVAILABILITY, NOW, ROOT, RULES

KEYS_FILE = ROOT / "demo" / "api-keys.json"
DECIDE = {"authorization": f"Bearer {DEMO_KEYS['decide']}"}
ADMIN = {"authorization": f"Bearer {DEMO_KEYS['admin']}"}
CART = {"country": "IE", "lines": [{"sku": "TEE-BLK-M", "quantity": 1}]}

# (method, path, body, scope): every route of the service. A new route must be added here, with
# the scope it needs (None: open), or `test_every_route_is_listed` fails.
ROUTES: list[tuple[str, str, object, str | None]] = [
    ("POST", "/v1/allocations", CART, "decide"),
    ("GET", "/v1/availability?sku=TEE-BLK-M&country=IE", None, "decide"),
    ("GET", "/v1/rules", None, "admin"),
    ("GET", "/v1/sources", None, "admin"),
    ("POST", "/v1/rules/reload", None, "admin"),
    ("GET", "/v1/rules/history", None, "admin"),
    ("POST", "/v1/rules/simulate", {"files": {"rules.yaml": "rules: {"}, "carts": [CART]}, "admin"),
    ("GET", "/health", None, None),
    ("GET", "/ready", None, None),
    ("GET", "/metrics", None, None),
    ("GET", "/schema/openapi.json", None, None),
]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Litestar:
    folder = tmp_path_factory.mktemp("auth") / "rules"
    shutil.copytree(RULES, folder)
    checkout = Checkout(
        load_rule_set(folder), [SnapshotSource.from_file(DEMO_AVAILABILITY, NOW)], clock=lambda: NOW
    )
    return create_app(
        checkout,
        reloader=RuleReloader(folder, checkout, watch=False),
        api_keys=ApiKeys.from_file(KEYS_FILE),
    )


@pytest.fixture(scope="module")
def client(app: Litestar) -> Iterator[TestClient[Litestar]]:
    with TestClient(app) as test_client:
        yield test_client


def call(
    client: TestClient[Litestar], method: str, path: str, body: object, headers: dict[str, str]
):
    if method == "POST":
        return client.post(path, json=body, headers=headers)
    return client.get(path, headers=headers)


def assert_problem(response, status: int, detail: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["status"], body["title"], body["detail"]) == (
        status,
        {401: "Unauthorized", 403: "Forbidden"}[status],
        detail,
    )


def test_every_route_is_listed(app: Litestar) -> None:
    served = {
        (method, route.path)
        for route in app.routes
        for method in getattr(route, "methods", ())
        if method not in {"HEAD", "OPTIONS"}
    }
    listed = {(method, path.split("?")[0]) for method, path, _, _ in ROUTES}
    schema = {p for p in {path for _, path in served} if p.startswith("/schema")}
    assert served - {("GET", p) for p in schema} == listed - {("GET", "/schema/openapi.json")}


@pytest.mark.parametrize(("method", "path", "body", "scope"), ROUTES, ids=str)
def test_without_a_key(client, method, path, body, scope) -> None:
    response = call(client, method, path, body, {})
    if scope is None:
        assert response.status_code == 200
        return
    assert_problem(response, 401, "an API key is needed: send `Authorization: Bearer <key>`")
    assert response.headers["www-authenticate"] == 'Bearer realm="checkout-engine"'


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": "Bearer not-a-key"},
        {"authorization": f"Bearer {DEMO_KEYS['decide']}x"},
        {"x-api-key": "not-a-key"},
        {"authorization": "Bearer " + "k" * 10_000},
    ],
    ids=["unknown", "one-character-off", "x-api-key-unknown", "ten-thousand-characters"],
)
@pytest.mark.parametrize(("method", "path", "body", "scope"), [r for r in ROUTES if r[3]])
def test_with_a_wrong_key(client, headers, method, path, body, scope) -> None:
    assert_problem(call(client, method, path, body, headers), 401, "the API key is not valid")


@pytest.mark.parametrize(
    ("method", "path", "body", "scope"), [r for r in ROUTES if r[3] == "admin"]
)
def test_decide_key_on_admin_routes_is_forbidden(client, method, path, body, scope) -> None:
    assert_problem(
        call(client, method, path, body, DECIDE),
        403,
        "the API key `demo-checkout` does not have the `admin` scope this route needs",
    )


@pytest.mark.parametrize(("method", "path", "body", "scope"), ROUTES, ids=str)
def test_with_the_right_scope(client, method, path, body, scope) -> None:
    headers = ADMIN if scope == "admin" else DECIDE
    response = call(client, method, path, body, headers)
    assert response.status_code in {200, 422}, response.text  # 422: the empty candidate
    if path == "/v1/rules/simulate":
        assert response.json()["type"] == "/problems/invalid-rules"


def test_a_decision_with_each_way_of_giving_the_key(client) -> None:
    for headers in (
        DECIDE,
        {"authorization": f"bearer {DEMO_KEYS['decide']}"},
        {"x-api-key": DEMO_KEYS["decide"]},
        {"authorization": "Basic Zm9vOmJhcg==", "x-api-key": DEMO_KEYS["decide"]},
    ):
        response = client.post("/v1/allocations", json=CART, headers=headers)
        assert response.status_code == 200, headers
        assert response.json()["decision"] == "allocate"


def test_basic_auth_is_not_a_key(client) -> None:
    response = client.post(
        "/v1/allocations", json=CART, headers={"authorization": "Basic Zm9vOmJhcg=="}
    )
    assert_problem(response, 401, "an API key is needed: send `Authorization: Bearer <key>`")


def test_keys_are_never_logged(client, caplog) -> None:
    secret = "ck_this-one-must-not-show-up"
    with caplog.at_level(logging.DEBUG):
        client.post("/v1/allocations", json=CART, headers={"authorization": f"Bearer {secret}"})
        client.get("/v1/rules", headers=DECIDE)
    text = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert secret not in text
    assert DEMO_KEYS["decide"] not in text


def test_openapi_names_the_key_on_every_scoped_route(client) -> None:
    schema = client.get("/schema/openapi.json").json()
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    for method, path, _, scope in ROUTES:
        operation = schema["paths"].get(path.split("?")[0], {}).get(method.lower())
        if operation is None:
            continue  # the schema's own routes
        assert ("security" in operation) == (scope is not None), path
        if scope is not None:
            assert operation["security"] == [{"ApiKey": []}]


# --- the keys file -------------------------------------------------------------------------------


def write_keys(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "keys.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_the_demo_keys_file_holds_hashes_not_keys() -> None:
    text = KEYS_FILE.read_text()
    assert DEMO_KEYS["decide"] not in text
    assert DEMO_KEYS["admin"] not in text
    keys = ApiKeys.from_file(KEYS_FILE)
    assert keys.names == ("demo-checkout", "demo-admin")
    decide = keys.identify(DEMO_KEYS["decide"].encode())
    assert decide is not None
    assert decide.scopes == {"decide"}
    admin = keys.identify(DEMO_KEYS["admin"].encode())
    assert admin is not None
    assert admin.scopes == {"decide", "admin"}
    assert keys.identify(b"demo-checkout") is None


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{", "not valid JSON"),
        ({"keys": []}, "no keys"),
        (
            {"keys": [{"name": "a", "scopes": ["root"], "sha256": "0" * 64}]},
            "`$.keys[0].scopes[0]`",
        ),
        ({"keys": [{"name": "a", "scopes": ["decide"], "sha256": "abc"}]}, "`$.keys[0].sha256`"),
        (
            {"keys": [{"name": "a", "scopes": ["decide"], "sha256": "0" * 64 + "\n"}]},
            "`$.keys[0].sha256`",
        ),
        ({"keys": [{"name": "a", "scopes": [], "sha256": "0" * 64}]}, "`$.keys[0].scopes`"),
        ({"keys": [{"name": "a", "scopes": ["decide"], "key": "x"}]}, "unknown field `key`"),
        (
            {"keys": [{"name": "a", "scopes": ["decide"], "sha256": "0" * 64}] * 2},
            "key names must be unique: a used twice",
        ),
    ],
    ids=[
        "not-json",
        "empty",
        "unknown-scope",
        "short-hash",
        "hash-and-newline",
        "no-scope",
        "raw-key",
        "twice",
    ],
)
def test_a_broken_keys_file_says_what_is_wrong(tmp_path, content, says) -> None:
    path = write_keys(tmp_path, content)
    with pytest.raises(KeyFileError) as caught:
        ApiKeys.from_file(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert says in str(caught.value)


def test_a_missing_keys_file(tmp_path) -> None:
    with pytest.raises(KeyFileError, match="cannot be read"):
        ApiKeys.from_file(tmp_path / "nope.json")


def test_keys_in_memory_need_one() -> None:
    with pytest.raises(KeyFileError, match="no keys"):
        ApiKeys(())
    keys = ApiKeys((KeyEntry("x", ("admin",), digest("secret")),))
    assert keys.identify(b"secret") is not None


# --- the command line ----------------------------------------------------------------------------


def test_serve_without_keys_refuses_to_start(capsys, monkeypatch) -> None:
    monkeypatch.delenv("ENGINE_API_KEYS_FILE", raising=False)
    monkeypatch.delenv("ENGINE_ALLOW_ANONYMOUS", raising=False)
    assert main(["serve", "--availability", str(DEMO_AVAILABILITY), "--rules", str(RULES)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("no API keys: give --api-keys FILE or ENGINE_API_KEYS_FILE")
    assert "--allow-anonymous" in err


def test_serve_with_a_broken_keys_file_refuses_to_start(tmp_path, capsys) -> None:
    path = write_keys(tmp_path, {"keys": []})
    code = main(["serve", "--api-keys", str(path), "--availability", str(DEMO_AVAILABILITY)])
    assert code == 2
    assert (
        capsys.readouterr().err
        == f"{path}: no keys: give at least one, or run without keys explicitly\n"
    )


def test_keys_new_prints_a_key_and_the_entry_that_lets_it_in(tmp_path, capsys) -> None:
    assert main(["keys", "new", "--name", "checkout-web", "--scope", "decide"]) == 0
    out = capsys.readouterr().out.splitlines()
    key = out[0].rsplit(" ", 1)[1]
    assert key.startswith("ck_")
    assert len(key) > 40
    entry = json.loads(out[2])
    assert entry == {"name": "checkout-web", "scopes": ["decide"], "sha256": digest(key)}
    keys = ApiKeys.from_file(write_keys(tmp_path, {"keys": [entry]}))
    assert keys.identify(key.encode()) is not None
