"""Every limit that more than one layer enforces, declared once.

Validation (the spec, `mtd validate`, profiling), the trainer's reader, the task gateway
and its server all import these, so what the spec accepts the server serves, and a value
refused in one place is refused in every other with the same number. Limits only one
module enforces stay in that module.
"""

from __future__ import annotations

#: Labels of one classification task, and characters of one label (the spec; the gateway
#: and the engine's guided choice take every label the spec allows).
MAX_LABELS = 1000
MAX_LABEL_CHARS = 256
#: Characters of a task's instruction (the spec; every prompt begins with it).
MAX_INSTRUCTION_CHARS = 10_000
#: Bytes of one JSON Lines record (`records.check_line`): data files, read in pieces.
MAX_LINE_BYTES = 1_000_000
#: Characters of one request's text at the gateway: whatever one record could hold, so
#: any input the model was trained or evaluated on can be asked.
MAX_REQUEST_TEXT_CHARS = MAX_LINE_BYTES
#: Bytes of one request body at the gateway: the longest text as UTF-8 (4 bytes a
#: character at most), JSON escapes and other fields. Read in chunks, refused past it.
MAX_BODY_BYTES = 4 * MAX_REQUEST_TEXT_CHARS + 64 * 1024
#: Tokens one request may ask the engine to generate.
MAX_NEW_TOKENS = 4096
#: Bytes of the catalogue file the gateway follows (100,000 tasks take about 30 MB).
MAX_CATALOGUE_BYTES = 64 * 1024 * 1024
#: Seconds a client has to send a request's headers; a connection that has not by then
#: is closed (half-open connections otherwise pile up without end).
HEADER_TIMEOUT_S = 10.0
#: Seconds the gateway waits for the engine's answer to one request.
REQUEST_TIMEOUT_S = 120.0
#: Connections and requests the gateway serves at once; more are answered 503 at once
#: instead of queueing without bound.
MAX_CONCURRENT_REQUESTS = 256
