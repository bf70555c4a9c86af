"""Monitoring: data drift (PSI), recommendation, model and serving health, and the alerts they raise.

``drift`` and ``health`` are pure metric functions; ``reads`` holds their SQL; ``checks`` turns measured
values and thresholds into :class:`~recomart.monitoring.checks.Check` rows; ``store`` writes
``ops.monitoring_metrics`` and keeps ``ops.alerts`` (open, acknowledged, resolved); ``webhook`` posts them.
"""
