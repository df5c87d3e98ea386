"""Verifies one webhook request captured by tests/push.rs with the
Standard Webhooks reference library (PyPI `standardwebhooks`), an
implementation independent of eventd's.

usage: verify_webhook.py SECRET MSG_ID TIMESTAMP SIGNATURE BODY_FILE
BODY_FILE holds the signed content: the body, or a GET's query string.
Exits 0 when the signature verifies, 1 (with the library's error) if not.
"""
import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

secret, msg_id, timestamp, signature, body_file = sys.argv[1:6]
with open(body_file, "rb") as f:
    body = f.read()
headers = {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": signature}
try:
    Webhook(secret).verify(body, headers)
except json.JSONDecodeError:
    # The library checks the signature, then parses the payload as JSON: a
    # form body or a query string verified but is not JSON.
    pass
except WebhookVerificationError as e:
    print(f"verification failed: {e}", file=sys.stderr)
    sys.exit(1)
# A tampered body must fail.
try:
    Webhook(secret).verify(body + b" ", headers)
    print("a tampered body verified", file=sys.stderr)
    sys.exit(1)
except WebhookVerificationError:
    pass
print("ok")
