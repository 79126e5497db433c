"""Tell people what a run did: an SNS topic, a Pub/Sub topic, a Slack-compatible webhook.

- :mod:`.options`  the ``notify`` table of a pipeline or ``[settings]`` (validated at load)
- :mod:`.message`  when a run is worth a message, and the message: event JSON, text, Slack body
- :mod:`.targets`  one sender per target, each raising :class:`~.targets.SendFailed`
- :mod:`.deliver`  every target, retried with backoff; outcomes for the manifest, never raising
"""
