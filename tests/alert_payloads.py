"""Alert payloads with the fields Alertmanager (webhook v4) and Grafana (webhook contact point) send."""

from __future__ import annotations

ZERO_TIME = "0001-01-01T00:00:00Z"


def alertmanager(status: str = "firing", *, severity: str = "critical", fingerprint: str = "5c8e0fe1b3c7d2a4",
                 alertname: str = "RagCandidateErrorRateHigh", starts_at: str = "2024-05-01T10:00:00.123456789Z",
                 extra_labels: dict | None = None) -> dict:
    labels = {"alertname": alertname, "severity": severity, "service": "rag-gateway", "version": "v2",
              **(extra_labels or {})}
    alert = {
        "status": status,
        "labels": labels,
        "annotations": {"summary": "V2 error rate above 10 %", "runbook_url": "https://runbooks.example/rag"},
        "startsAt": starts_at,
        "endsAt": "2024-05-01T10:15:00Z" if status == "resolved" else ZERO_TIME,
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=rag_error_rate",
        "fingerprint": fingerprint,
    }
    return {
        "version": "4",
        "groupKey": '{}/{severity="critical"}:{alertname="' + alertname + '"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "rag-rollout",
        "groupLabels": {"alertname": alertname},
        "commonLabels": labels,
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager.example:9093",
        "alerts": [alert],
    }


def grafana(status: str = "firing", *, severity: str = "critical", fingerprint: str = "c6eadffa33fcdf37",
            alertname: str = "RAG V2 latency", starts_at: str = "2024-05-01T12:51:03.157076+02:00") -> dict:
    labels = {"alertname": alertname, "grafana_folder": "RAG", "severity": severity}
    alert = {
        "status": status,
        "labels": labels,
        "annotations": {"summary": "p95 latency of V2 above 800 ms"},
        "startsAt": starts_at,
        "endsAt": "2024-05-01T13:01:03+02:00" if status == "resolved" else ZERO_TIME,
        "generatorURL": "http://grafana.example/alerting/grafana/abc/view",
        "fingerprint": fingerprint,
        "silenceURL": "http://grafana.example/alerting/silence/new",
        "dashboardURL": "http://grafana.example/d/rag",
        "panelURL": "http://grafana.example/d/rag?viewPanel=3",
        "values": {"B": 0.93, "C": 1},
        "valueString": "[ var='B' labels={} value=0.93 ], [ var='C' labels={} value=1 ]",
    }
    return {
        "receiver": "rag-rollout",
        "status": status,
        "orgId": 1,
        "alerts": [alert],
        "groupLabels": {"alertname": alertname},
        "commonLabels": labels,
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://grafana.example/",
        "version": "1",
        "groupKey": '{}:{alertname="' + alertname + '"}',
        "truncatedAlerts": 0,
        "title": f"[{status.upper()}:1] {alertname} (RAG)",
        "state": "alerting" if status == "firing" else "ok",
        "message": f"**{status.title()}**\n\nValue: B=0.93",
    }


def simple(severity: str = "critical", kind: str = "error_rate", **extra) -> dict:
    return {"type": kind, "severity": severity, "value": 0.5, "threshold": 0.1, **extra}
