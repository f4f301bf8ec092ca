"""The real test services start and answer: Meilisearch binary, moto S3 server, aiosmtpd."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from pathlib import Path

import aioboto3
import httpx

from tests.services import MeilisearchServer, SmtpServer, free_port


async def test_meilisearch_indexes_and_finds_a_typo(meilisearch: MeilisearchServer) -> None:
    headers = {"Authorization": f"Bearer {meilisearch.master_key}"}
    async with httpx.AsyncClient(base_url=meilisearch.url, headers=headers) as client:
        assert (await client.get("/health")).json() == {"status": "available"}
        version = (await client.get("/version")).json()
        assert version["pkgVersion"].startswith("1.21")
        added = await client.post("/indexes/smoke/documents", json=[{"id": 1, "title": "Moby Dick"}])
        task = added.json()["taskUid"]
        status = (await client.get(f"/tasks/{task}", params={})).json()
        while status["status"] in {"enqueued", "processing"}:
            status = (await client.get(f"/tasks/{task}")).json()
        assert status["status"] == "succeeded"
        hits = (await client.post("/indexes/smoke/search", json={"q": "moby dik"})).json()["hits"]
        assert hits == [{"id": 1, "title": "Moby Dick"}]
        unauthorized = await httpx.AsyncClient(base_url=meilisearch.url).get("/indexes")
        assert unauthorized.status_code == 401


def test_meilisearch_starts_with_a_master_key_that_begins_with_a_dash(tmp_path: Path) -> None:
    # secrets.token_urlsafe gives such a key one time in 64; as a separate argument it read as a flag.
    server = MeilisearchServer(
        url=f"http://127.0.0.1:{(port := free_port())}", master_key="-" + "k" * 31, data_dir=tmp_path, port=port
    )
    server.start()
    try:
        headers = {"Authorization": f"Bearer {server.master_key}"}
        assert httpx.get(f"{server.url}/indexes", headers=headers).status_code == 200
    finally:
        server.stop()


async def test_moto_serves_real_s3_over_http(s3_endpoint: str) -> None:
    session = aioboto3.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    async with session.client("s3", endpoint_url=s3_endpoint) as s3:
        await s3.create_bucket(Bucket="smoke")
        await s3.put_object(Bucket="smoke", Key="a/b.txt", Body=b"hello range")
        ranged = await s3.get_object(Bucket="smoke", Key="a/b.txt", Range="bytes=6-10")
        assert await ranged["Body"].read() == b"range"
        assert ranged["ContentRange"] == "bytes 6-10/11"


def test_smtp_server_receives_mail(smtp_server: SmtpServer) -> None:
    message = EmailMessage()
    message["From"] = "noreply@audioverse.test"
    message["To"] = "listener@example.com"
    message["Subject"] = "Verify your email"
    message.set_content("token=abc")
    with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
        client.send_message(message)
    assert len(smtp_server.messages) == 1
    assert smtp_server.messages[0]["Subject"] == "Verify your email"
