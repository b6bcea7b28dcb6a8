"""`nectar.read_events` on `s3://bucket` against the test moto server (tests/services.sh): the
compacted demo log uploaded to a bucket reads as it does from the data dir, the erasures come
from the DynamoDB table `NECTAR_ERASURES_TABLE` names, and a read without that table is refused.

moto does not check signatures, so the fixtures talk to it with plain HTTP (no boto3 in the
Lab's env); the package under test uses the real AWS SDK."""

import json
import os
import pathlib
import time
import urllib.request
import uuid

import pytest

import nectar

ENDPOINT = os.environ.get("NECTAR_TEST_AWS_ENDPOINT")
pytestmark = pytest.mark.skipif(
    not ENDPOINT, reason="NECTAR_TEST_AWS_ENDPOINT is not set (bash tests/services.sh start)"
)


def _call(method: str, url: str, body: bytes = b"", headers: dict | None = None) -> bytes:
    req = urllib.request.Request(url, data=body if method != "GET" else None, method=method)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read()


def _dynamo(target: str, payload: dict) -> dict:
    body = _call(
        "POST",
        ENDPOINT + "/",
        json.dumps(payload).encode(),
        {
            "X-Amz-Target": f"DynamoDB_20120810.{target}",
            "Content-Type": "application/x-amz-json-1.0",
            "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request",
        },
    )
    return json.loads(body or b"{}")


@pytest.fixture()
def bucket(compacted: pathlib.Path) -> str:
    """A fresh bucket holding the compacted demo log (events/ and compacted/ as in the data dir)."""
    name = f"lab-{uuid.uuid4().hex[:12]}"
    _call("PUT", f"{ENDPOINT}/{name}")
    for top in ("events", "compacted"):
        for path in (compacted / top).rglob("*"):
            if path.is_file():
                key = path.relative_to(compacted).as_posix()
                # An explicit type: urllib's default (form-urlencoded) makes moto parse the body.
                _call(
                    "PUT",
                    f"{ENDPOINT}/{name}/{key}",
                    path.read_bytes(),
                    {"Content-Type": "application/octet-stream"},
                )
    return name


@pytest.fixture()
def erasures_table() -> str:
    """A fresh erasures table with the schema of the stack's (pk = site, sk = subject)."""
    name = f"lab-erasures-{uuid.uuid4().hex[:8]}"
    _dynamo(
        "CreateTable",
        {
            "TableName": name,
            "AttributeDefinitions": [
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            "BillingMode": "PAY_PER_REQUEST",
        },
    )
    return name


@pytest.fixture()
def aws_env(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", ENDPOINT)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return monkeypatch


def test_s3_reads_equal_the_data_dir_and_leave_erased_users_out(compacted, bucket, erasures_table, aws_env):
    local = nectar.read_events(compacted, "demo")
    # GIVEN no erasures table named THEN the read is refused, naming the variable
    aws_env.delenv("NECTAR_ERASURES_TABLE", raising=False)
    with pytest.raises(ValueError, match="NECTAR_ERASURES_TABLE"):
        nectar.read_events(f"s3://{bucket}", "demo")
    # GIVEN an empty erasures table WHEN the bucket is read THEN the same events as the data dir
    aws_env.setenv("NECTAR_ERASURES_TABLE", erasures_table)
    remote = nectar.read_events(f"s3://{bucket}", "demo")
    assert remote.num_rows == local.num_rows > 0
    assert sorted(remote.column("event_id").to_pylist()) == sorted(local.column("event_id").to_pylist())
    # WHEN a user with events is erased (the record the recommend function writes)
    users = [u for u in local.column("user_id").to_pylist() if u]
    victim = max(set(users), key=users.count)
    _dynamo(
        "PutItem",
        {
            "TableName": erasures_table,
            "Item": {
                "pk": {"S": "demo"},
                "sk": {"S": f"user:{victim}"},
                "requested_ms": {"N": str(int(time.time() * 1000))},
            },
        },
    )
    after = nectar.read_events(f"s3://{bucket}", "demo")
    # THEN none of their events is read, and everyone else's still are
    assert victim not in after.column("user_id").to_pylist()
    assert after.num_rows == local.num_rows - users.count(victim)
