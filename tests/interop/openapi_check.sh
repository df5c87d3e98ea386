#!/usr/bin/env bash
# Validates /openapi.json with openapi-spec-validator, then fuzzes the running
# server from it with schemathesis (bounded examples). Fails on any 5xx,
# response that violates the document, or wrong content type.
# Usage: tests/interop/openapi_check.sh [path/to/eventd] (default target/debug/eventd)
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/debug/eventd}
py=${EVENTD_INTEROP_PYTHON:-.venv/bin/python}
venv_bin=$(dirname "$py")
work=$(mktemp -d)
port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
token=openapi-check-operator-token-0123456789abcdef
EVENTD_ADMIN_TOKEN=$token RUST_LOG=warn "$bin" serve --listen "127.0.0.1:$port" \
  --database-url "$work/eventd.db" >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do curl -fs "$base/healthz" >/dev/null && break; sleep 0.1; done

curl -fs "$base/openapi.json" -o "$work/openapi.json"
"$venv_bin/openapi-spec-validator" "$work/openapi.json"

key=$(curl -fs -X POST "$base/v1/accounts" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -d '{"name":"fuzz"}' | "$py" -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')
# Some events so that fetch answers with real batches.
curl -fs -X POST "$base/v1/events" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
  -d '[{"trigger":"OPEN","recipient":"a@example.com"},{"trigger":"CLICK","recipient":"b@example.com","url":"https://example.com/"}]' >/dev/null

# One worker: with two threads, CPython 3.11's ast module (which hypothesis
# calls to describe its strategies) shares its recursion counter between
# threads and can fail with "SystemError: AST constructor recursion depth
# mismatch", a runtime error of the tool that CI once reported as a failure.
"$venv_bin/schemathesis" run "$work/openapi.json" --url "$base" \
  -H "Authorization: Bearer $key" \
  --checks not_a_server_error,response_schema_conformance,content_type_conformance \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" --seed 1 --workers 1 --no-color \
  --suppress-health-check all
# The operator endpoints, with the operator token.
"$venv_bin/schemathesis" run "$work/openapi.json" --url "$base" \
  -H "Authorization: Bearer $token" --include-path-regex '^/v1/accounts' \
  --checks not_a_server_error,response_schema_conformance,content_type_conformance \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" --seed 1 --workers 1 --no-color \
  --suppress-health-check all
echo "schemathesis: no server error and no schema violation"
