"""Event service: a job whose work arrives as event ranges, asked from the PanDA server while the payload runs.

kinds.py     which event-service job kinds this pilot runs, and the refusal of the others (1300)
source.py    event ranges from the server (acquire_event_ranges / update_event_ranges, legacy fallback)
reporter.py  range updates: spooled to disk first, sent in batches, nothing lost on a crash
driver.py    the generic executor: feeds ranges to the payload over a line-based JSON channel (two FIFOs in the
             work dir, protocol in docs/eventservice.md), stages each range's output out as it arrives, stops
             asking when time is short, reports in-flight ranges failed when stopped
"""
