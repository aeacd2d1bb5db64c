"""Pure KPI math, no I/O, one production path.

* ``windows``: durations, rolling windows and their event-time buckets, the KPI rules;
* ``record``: one customer's record within retention (``Customer``) and what a step changed;
* ``step``: a batch's events added to a record (duplicates, copies, pruning), saying what changed;
* ``attribution``: which team each action is credited to;
* ``cap``: over ``ADVOCACY_MAX_EVENTS_PER_CUSTOMER``, which events a record keeps (those that
  expire last), which of the batch's are turned away and which held ones are evicted;
* ``totals``: what the changes of a batch add to the shared totals (``Tally``), the totals
  as read back (``Totals``), and the ``GET /kpis`` rows with their rates and bands.

The shared totals are the sum, over customers, of what each customer's set of events
contributes, so they do not depend on arrival order; adding an event twice leaves the set,
and so the totals, unchanged. The full recomputation that proves ``step`` right is the
reference model in ``tests/reference.py``.

Event times are integer microseconds since the epoch (``at_us``): every comparison
("latest", "follows") keeps microsecond precision. Windows, buckets and the clock
(``now_ms``) stay in milliseconds: a bucket is a whole number of milliseconds, so an
event's bucket is the same whether read from its microseconds or its milliseconds.
"""
