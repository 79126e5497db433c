"""Files packaged with the Lambda function: the pipelines config (``drivepipe.toml``)."""
