"""Jobs submitted as one batch: watched and cancelled together, seen only by their tenant."""

from __future__ import annotations

import time
from pathlib import Path

from tests.api.server import ApiServer
from tests.api.test_jobs import created, upload, write_png


def test_a_batch_is_followed_to_the_end(api: ApiServer, tmp_path: Path) -> None:
    image = write_png(tmp_path / "in.png").read_bytes()
    _, key = api.key()
    _, other = api.key()
    with api.client(key) as client:
        batch = client.post("/v1/batches")
        assert batch.status_code == 201
        batch_id = batch.json()["id"]
        jobs = {created(upload(client, f"{n}.png", image, batch=batch_id)) for n in range(3)}
        created(upload(client, "alone.png", image))  # not in the batch
        deadline = time.monotonic() + 120
        while not (summary := client.get(f"/v1/batches/{batch_id}").json())["finished"]:
            assert time.monotonic() < deadline, summary
            time.sleep(0.3)
        assert summary["jobs"] == 3 and summary["jobs_by_state"] == {"done": 3}
        assert summary["progress"] == 1.0 and summary["frames_done"] == summary["frames_total"] == 3
        listed = client.get("/v1/jobs", params={"batch": batch_id}).json()["jobs"]
        assert {job["id"] for job in listed} == jobs
        assert all(job["batch_id"] == batch_id for job in listed)
        assert client.delete(f"/v1/batches/{batch_id}").json() == {"cancelled": 0}  # all done
        assert upload(client, "x.png", image, batch="../x").status_code == 422
    with api.client(other) as client:  # another tenant's batch is no batch of its own
        assert client.get(f"/v1/batches/{batch_id}").status_code == 404
        assert client.delete(f"/v1/batches/{batch_id}").status_code == 404


def test_cancelling_a_batch_cancels_its_unfinished_jobs(idle_api: ApiServer, tmp_path: Path) -> None:
    image = write_png(tmp_path / "in.png").read_bytes()
    _, key = idle_api.key()
    with idle_api.client(key) as client:
        batch_id = client.post("/v1/batches").json()["id"]
        jobs = [created(upload(client, f"{n}.png", image, batch=batch_id)) for n in range(2)]
        outside = created(upload(client, "alone.png", image))
        assert client.delete(f"/v1/batches/{batch_id}").json() == {"cancelled": 2}
        assert [client.get(f"/v1/jobs/{j}").json()["state"] for j in jobs] == ["cancelled"] * 2
        assert client.get(f"/v1/jobs/{outside}").json()["state"] == "queued"
        assert client.get(f"/v1/batches/{batch_id}").json()["finished"] is True
        assert client.delete(f"/v1/batches/{batch_id}").json() == {"cancelled": 0}  # all finished
        # A listing's batch filter takes what a batch id may be, as the submission does.
        assert client.get("/v1/jobs", params={"batch": batch_id}).status_code == 200
        for bad in ("../x", "a b", "x" * 17, "a\u00e9"):
            assert client.get("/v1/jobs", params={"batch": bad}).status_code == 422, bad
            assert upload(client, "x.png", image, batch=bad).status_code == 422, bad
