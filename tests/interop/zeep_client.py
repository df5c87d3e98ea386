"""Interop check of the eventNotification SOAP service with Python zeep.

Usage: zeep_client.py BASE_URL API_KEY

The caller (tests/soap_interop.rs) has ingested, for the key's account:
OPEN r0@x.test, OPEN r1@x.test, CLICK c@x.test (url, data {"geo": "FR"}).
Exits non-zero with a message on the first mismatch.
"""

import json
import sys

import requests
from zeep import Client
from zeep.exceptions import Fault
from zeep.transports import Transport
from zeep.wsse.username import UsernameToken


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def client_for(base, user, password):
    session = requests.Session()
    session.auth = requests.auth.HTTPBasicAuth(user, password)
    return Client(f"{base}/soap/eventNotification?wsdl", transport=Transport(session=session))


def as_dict(event):
    """An Apache Map decoded by zeep: a list of key/value items."""
    return {item.key: item.value for item in event.item}


def main():
    base, key = sys.argv[1], sys.argv[2]
    client = client_for(base, "acme", key)
    svc = client.service

    status = svc.getQueueStatus()
    check(status.pending == 3, f"3 pending before the fetch, got {status.pending}")

    batch = svc.fetchBatch(size=10, consumer="zeep", triggers=["OPEN", "CLICK"], leaseSeconds=60)
    check(batch.batchId, "a batch id")
    check(batch.count == 3, f"3 events, got {batch.count}")
    events = [as_dict(e) for e in batch.events.event]
    check([e["recipient"] for e in events] == ["r0@x.test", "r1@x.test", "c@x.test"], f"recipients: {events}")
    click = events[2]
    check(click["trigger"] == "CLICK", f"trigger: {click}")
    check(click["url"] == "https://x.test/a?b=1&c=2", f"url: {click}")
    check(json.loads(click["data"]) == {"geo": "FR"}, f"data: {click}")
    check(len(click["id"]) == 36, f"id: {click}")

    # The same consumer gets the same batch again while it is open.
    again = svc.fetchBatch(consumer="zeep")
    check(again.batchId == batch.batchId, "refetch returns the same batch")

    read = svc.markBatchRead(batchId=batch.batchId)
    check(read.deleted == 3, f"deleted 3, got {read.deleted}")
    read = svc.markBatchRead(batchId=batch.batchId)
    check(read.deleted == 0, "marking twice deletes nothing more")

    empty = svc.fetchBatch(consumer="zeep")
    check(empty.batchId is None and empty.count == 0, f"empty queue: {empty}")

    # Faults: an unknown batch is the client's fault.
    try:
        svc.markBatchRead(batchId="no-such-batch")
        check(False, "an unknown batch must fault")
    except Fault as f:
        check("Client" in str(f.code), f"Client fault code, got {f.code}")
        check("unknown batch" in f.message, f"fault message: {f.message}")

    # Invalid arguments.
    try:
        svc.fetchBatch(size=20000)
        check(False, "size 20000 must fault")
    except Fault as f:
        check("Client" in str(f.code) and "size" in f.message, f"size fault: {f.code} {f.message}")

    # Wrong credentials.
    try:
        client_for(base, "acme", "evk_wrong").service.getQueueStatus()
        check(False, "a wrong key must fault")
    except Fault as f:
        check("Client" in str(f.code), f"auth fault code, got {f.code}")

    # WS-Security UsernameToken instead of HTTP auth.
    wsse_client = Client(f"{base}/soap/eventNotification?wsdl", wsse=UsernameToken("acme", key))
    check(wsse_client.service.getQueueStatus().pending == 0, "WS-Security UsernameToken works")

    # SOAP 1.2 port.
    svc12 = client.bind("eventNotification", "eventNotificationSoap12")
    status = svc12.getQueueStatus()
    check(status.pending == 0, f"SOAP 1.2 status: {status.pending}")

    print("zeep interop: OK")


if __name__ == "__main__":
    main()
