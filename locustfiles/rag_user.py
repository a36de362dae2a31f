"""A realistic user mix against a running service: mostly questions, some searches.

    locust -f locustfiles/rag_user.py --host http://localhost:3000 --headless -u 8 -r 2 -t 1m

Ingest a few documents into the `default` collection first. Thresholds, the ingest share
and the smoke run in the test suite belong to the load-testing work (see the issues).
"""

from __future__ import annotations

import random

from locust import HttpUser, between, task

QUESTIONS = [
    "How long does the battery take to charge?",
    "How long is the warranty?",
    "What is the water resistance rating?",
    "How many charge cycles does the battery last?",
]


class RagUser(HttpUser):
    wait_time = between(0.5, 2.0)

    @task(8)
    def query(self) -> None:
        self.client.post("/query", json={"question": random.choice(QUESTIONS)}, name="query")

    @task(3)
    def search(self) -> None:
        self.client.post("/search", json={"query": random.choice(QUESTIONS)}, name="search")
