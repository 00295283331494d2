"""Nostr event kinds Pylon uses (DESIGN §3). Nothing else is published."""

from __future__ import annotations

ANNOUNCE = 31990  # NIP-89 handler announcement, d = node id, k = 5931
NUTZAP_INFO = 10019  # NIP-61: where a node accepts nutzaps
HEARTBEAT = 11998  # nostrdvm/Amethyst heartbeat, replaceable, with expiration
JOB_REQUEST = 5931  # NIP-90 request: one file of a repo-map run (also the run root and input chunks)
JOB_FEEDBACK = 7000  # NIP-90 feedback
JOB_RESULT = 6931  # NIP-90 result
NUTZAP = 9321  # NIP-61 payment
REDEMPTION = 7376  # NIP-60 spending history: the node's receipt

ALL = (ANNOUNCE, NUTZAP_INFO, HEARTBEAT, JOB_REQUEST, JOB_FEEDBACK, JOB_RESULT, NUTZAP, REDEMPTION)
