"""schemathesis hooks for dormant: the server-error check, told apart from the answers dormant
documents for a container that fails on its own.

A create, wake or archive runs the user's container. When that container's own app exits or never
answers, or when the host has no room to run it, dormant says so with a documented 5xx and a
stable error code (README, "API"; error_kind.rs): the request was understood, the container
failed. schemathesis sends arbitrary `cmd`s, so the demo app does exit. Those answers are expected
here; any other 5xx (a Docker call dormant should have refused to make, a store or snapshot
failure, a 5xx without dormant's error shape) is a bug, and so is a dropped connection.
"""

import schemathesis

# (status, error code) that describe the user's container or the host's capacity, not dormant.
CONTAINER_FAILURES = {
    (502, "not_ready"),  # the app exited or never answered while being created
    (502, "wake_failed"),  # the app exited while being woken
    (503, "wake_backing_off"),  # a failed wake waits before the next try
    (504, "wake_timed_out"),  # the app did not answer within --wake-timeout
    (503, "no_room"),  # the capacity limits leave no room now (Retry-After is set)
}


# A create never wakes anything: a container that could never fit is refused there with a 4xx.
NOT_FROM_CREATE = {"wake_failed", "wake_backing_off"}


@schemathesis.check
def no_server_error(ctx, response, case):
    """A 5xx is a failure unless it is one of the container failures above."""
    if response.status_code < 500:
        return None
    try:
        code = response.json()["error"]["code"]
    except Exception:
        code = None
    creating = case.method.upper() == "POST" and case.path == "/v1/containers"
    if (response.status_code, code) in CONTAINER_FAILURES and not (
        creating and code in NOT_FROM_CREATE
    ):
        return None
    raise AssertionError(
        f"server error {response.status_code} ({code or 'no error code'}): {response.text[:500]}"
    )
