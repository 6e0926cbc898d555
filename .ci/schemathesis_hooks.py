"""Schemathesis hooks for .ci/schemathesis.

The API lets a peer act only as itself, and a join names its party twice
(path and body). Generated data knows neither rule, so valid requests would
almost all stop at 403 or 422 and never reach a success. For schema-valid
(positive) cases only, these hooks make the body speak as the peer whose
token the run uses, and make a join's body name the party of its path.
Negative cases are left as generated, so invalid input is still refused.
"""

import schemathesis

# The peer whose token the run sends (.ci/schemathesis registers it).
PEER = "peer_0123456789ab"
# The peer the admin routes act on: revoking the run's own peer would end
# its token, and every later request would be refused.
ADMIN_TARGET = "peer_admin_target"


def _positive(case):
    meta = case.meta
    return meta is not None and meta.generation.mode.is_positive


@schemathesis.hook
def map_case(context, case):
    params = case.path_parameters or {}
    if case.operation.label.startswith(("POST /admin/", "DELETE /admin/")) and "peer_id" in params:
        params["peer_id"] = ADMIN_TARGET
    if not _positive(case) or not isinstance(case.body, dict):
        return case
    body = case.body
    label = case.operation.label
    if label == "POST /parties" and isinstance(body.get("host_peer_info"), dict):
        body["host_peer_info"]["peer_id"] = PEER
    elif label == "POST /parties/{party_id}/join":
        if isinstance(body.get("peer_info"), dict):
            body["peer_info"]["peer_id"] = PEER
        party_id = (case.path_parameters or {}).get("party_id")
        if party_id is not None:
            body["party_id"] = party_id
    return case
