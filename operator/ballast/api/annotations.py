"""The annotations people (or `kubectl ballast`) write on a ModelDeployment to steer a rollout by hand.

`promote` and `abort` carry a token: any new value acts once. `paused` is level-triggered. `approved-by`
names who approved, and the trusted approvals policy lets only that user write their own name.
"""

PROMOTE_ANNOTATION = "ballast.dev/promote"
ABORT_ANNOTATION = "ballast.dev/abort"
PAUSE_ANNOTATION = "ballast.dev/paused"
APPROVED_BY_ANNOTATION = "ballast.dev/approved-by"
