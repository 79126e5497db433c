"""Google Drive API v3 client: recursive listing, verified parallel downloads, retries."""

from shared.drive.auth import ApiKeyAuth, ServiceAccountAuth, TokenAuth, mask_secrets
from shared.drive.client import DriveClient
from shared.drive.models import ClientStats, DriveFile, FetchResult
from shared.drive.retry import RetryPolicy

__all__ = [
    "ApiKeyAuth",
    "ClientStats",
    "DriveClient",
    "DriveFile",
    "FetchResult",
    "RetryPolicy",
    "ServiceAccountAuth",
    "TokenAuth",
    "mask_secrets",
]
