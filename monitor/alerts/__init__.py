"""
Alerts: rules that watch the stored posts (and the collectors), incidents
that group what they find, and notifications that tell people, reliably.

  - L{monitor.alerts.rules}: what a rule is and what it looks at;
  - L{monitor.alerts.config}: the C{[[rules]]} and C{[[channels]]} keys;
  - L{monitor.alerts.windows}: per-minute counts keyed by post time;
  - L{monitor.alerts.incidents}: grouping hits into incidents;
  - L{monitor.alerts.detector}: rules + windows + incidents, pure and
    deterministic, shared by the live engine and the backtest;
  - L{monitor.alerts.engine}: the sink and service in the hub;
  - L{monitor.alerts.outbox} and L{monitor.alerts.notifiers}: delivery;
  - L{monitor.alerts.backtest}: a rule run over stored posts.

Their rows are kept by an L{monitor.store.interfaces.IAlertStore}
(L{monitor.store.sqlite_alerts} and L{monitor.store.postgresql_alerts} hold
the SQL).
"""
