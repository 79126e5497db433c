"""Google Drive API v3 client: recursive listing, changes feed, verified parallel downloads."""

from shared.drive.auth import ApiKeyAuth, ServiceAccountAuth, TokenAuth, mask_secrets
from shared.drive.client import DriveClient
from shared.drive.models import ChangesPage, ClientStats, DriveChange, DriveFile, FetchResult
from shared.drive.retry import RetryPolicy

__all__ = [
    "ApiKeyAuth",
    "ChangesPage",
    "ClientStats",
    "DriveChange",
    "DriveClient",
    "DriveFile",
    "FetchResult",
    "RetryPolicy",
    "ServiceAccountAuth",
    "TokenAuth",
    "mask_secrets",
]
