"""POST a run's alert changes to ``RECOMART_ALERT_WEBHOOK`` (JSON; stdlib HTTP client, no retries:
the alerts stay in ``ops.alerts`` and the DAG's failure callback logs them whatever the webhook does)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from recomart.monitoring.store import RunOutcome, summary_line

TIMEOUT_S = 10.0


def webhook_payload(run_id: str, outcome: RunOutcome) -> dict[str, Any]:
    """``{"source", "run_id", "text", "opened", "resolved"}``: ``text`` is one line per change (chat
    webhooks such as Slack's show it); the lists carry the alert rows."""
    lines = [f"opened: {summary_line(a)}" for a in outcome.opened]
    lines += [f"resolved: {summary_line(a)}" for a in outcome.resolved]
    return {
        "source": "recomart monitor",
        "run_id": run_id,
        "text": "\n".join(lines),
        "opened": outcome.opened,
        "resolved": outcome.resolved,
    }


def post_alerts(url: str, run_id: str, outcome: RunOutcome) -> str | None:
    """POST the alerts ``outcome`` opened or resolved to ``url`` (nothing when it changed none).

    Returns None on success (or nothing to send), else why the POST failed (one line).
    """
    if not (outcome.opened or outcome.resolved):
        return None
    body = json.dumps(webhook_payload(run_id, outcome), default=str).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            response.read()
    except (urllib.error.URLError, OSError) as exc:
        return f"alert webhook POST failed: {type(exc).__name__}: {exc}"
    return None
