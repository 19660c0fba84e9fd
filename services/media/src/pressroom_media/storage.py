"""Where media files live: a folder on local disk or an S3-compatible bucket.

Keys are relative POSIX paths such as ``<brand_id>/<asset_id>/original.jpg``. Both backends
accept the same keys and behave the same: a stored object appears whole or not at all, and
reads stream in chunks so memory stays flat however large the file is.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING, Protocol

import anyio
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import ClientError
from pressroom_kit.logs import get_logger

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

    from pressroom_media.settings import MediaSettings

DEFAULT_CHUNK_SIZE = 256 * 1024
# Files up to this size go up in one PUT; larger ones in parts of at least PART_SIZE.
MULTIPART_THRESHOLD = 16 * 1024 * 1024
PART_SIZE = 8 * 1024 * 1024
_MAX_PARTS = 10_000
_COPY_BUFFER = 1024 * 1024
# HEAD answers carry no body, so a missing object shows only as "404".
_NO_OBJECT = frozenset({"404", "NoSuchKey", "NotFound"})
_NO_BUCKET = frozenset({"404", "NoSuchBucket", "NotFound"})

log = get_logger(__name__)


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int


class Storage(Protocol):
    async def start(self) -> None:
        """Connect, and create the bucket or folder if it is missing."""

    async def close(self) -> None: ...

    async def check(self) -> None:
        """Readiness: raise when the backend cannot be reached."""

    async def put_file(self, key: str, path: str, content_type: str) -> None:
        """Store the local file ``path`` under ``key`` atomically; the file is consumed
        (moved or deleted) on success and left in place on failure."""

    async def stat(self, key: str) -> StoredObject | None: ...

    def read(
        self,
        key: str,
        start: int = 0,
        end: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> AsyncIterator[bytes]:
        """Bytes ``start`` to ``end`` inclusive (``None``: to the end) in chunks. A bad key or
        range raises ``ValueError`` at once; a missing object raises ``FileNotFoundError``
        from the first iteration."""

    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing object is fine."""

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with ``prefix``; return how many."""


def asset_prefix(brand_id: uuid.UUID, asset_id: uuid.UUID) -> str:
    """Where an asset's files live: ``<brand_id>/<asset_id>/<name>.<ext>``."""
    return f"{brand_id}/{asset_id}/"


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative POSIX path, else raise ``ValueError``."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise ValueError(f"invalid storage key: {key!r}")
    if any(segment in ("", ".", "..") for segment in key.split("/")):
        raise ValueError(f"invalid storage key: {key!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """Like ``validate_key`` but a trailing ``/`` is allowed; an empty prefix (everything)
    is refused."""
    validate_key(prefix.removesuffix("/"))
    return prefix


def _validate_range(start: int, end: int | None, chunk_size: int) -> None:
    if start < 0 or (end is not None and end < start) or chunk_size <= 0:
        raise ValueError(f"invalid byte range {start}-{end} (chunk size {chunk_size})")


class LocalStorage:
    """Objects as files under ``root``; writes land by rename, so readers never see half."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def _path(self, key: str) -> Path:
        return self._root / validate_key(key)

    async def start(self) -> None:
        await anyio.Path(self._root).mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        return None

    async def check(self) -> None:
        def probe() -> None:
            if not self._root.is_dir():
                raise FileNotFoundError(f"storage folder {self._root} does not exist")
            if not os.access(self._root, os.W_OK | os.X_OK):
                raise PermissionError(f"storage folder {self._root} is not writable")

        await anyio.to_thread.run_sync(probe)

    async def put_file(self, key: str, path: str, content_type: str) -> None:
        target = self._path(key)
        await anyio.to_thread.run_sync(_move_into_place, Path(path), target)

    async def stat(self, key: str) -> StoredObject | None:
        path = self._path(key)
        try:
            result = await anyio.Path(path).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not S_ISREG(result.st_mode):
            return None
        return StoredObject(key=key, size=result.st_size)

    def read(
        self,
        key: str,
        start: int = 0,
        end: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> AsyncIterator[bytes]:
        path = self._path(key)
        _validate_range(start, end, chunk_size)
        return self._read(path, start, end, chunk_size)

    async def _read(
        self, path: Path, start: int, end: int | None, chunk_size: int
    ) -> AsyncIterator[bytes]:
        try:
            file = await anyio.open_file(path, "rb")
        except (IsADirectoryError, NotADirectoryError) as error:
            raise FileNotFoundError(errno.ENOENT, "no such object", str(path)) from error
        async with file:
            await file.seek(start)
            remaining = None if end is None else end - start + 1
            while remaining is None or remaining > 0:
                size = chunk_size if remaining is None else min(chunk_size, remaining)
                chunk = await file.read(size)
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    async def delete(self, key: str) -> None:
        path = self._path(key)

        def remove() -> None:
            if _unlink_file(path):
                _prune_empty_folders(path.parent, self._root)

        await anyio.to_thread.run_sync(remove)

    async def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix)
        return await anyio.to_thread.run_sync(self._delete_prefix, prefix)

    def _delete_prefix(self, prefix: str) -> int:
        folder, _, name_start = prefix.rpartition("/")
        base = self._root / folder if folder else self._root
        try:
            entries = list(os.scandir(base))
        except (FileNotFoundError, NotADirectoryError):
            return 0
        removed = 0
        for entry in entries:
            if not entry.name.startswith(name_start):
                continue
            if entry.is_dir(follow_symlinks=False):
                removed += _remove_tree(Path(entry.path))
            elif _unlink_file(Path(entry.path)):
                removed += 1
        _prune_empty_folders(base, self._root)
        return removed


def _move_into_place(source: Path, target: Path) -> None:
    # Make the data durable before the name points at it.
    with open(source, "rb") as handle:
        os.fsync(handle.fileno())
    for attempt in range(3):
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(source, target)
            break
        except FileNotFoundError:
            # A concurrent delete_prefix may have pruned the fresh folder: make it again.
            if attempt == 2 or not source.exists():
                raise
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise
            _copy_into_place(source, target)
            source.unlink()
            break
    _fsync_folder(target.parent)


def _copy_into_place(source: Path, target: Path) -> None:
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    try:
        with open(source, "rb") as reader, open(partial, "xb") as writer:
            shutil.copyfileobj(reader, writer, _COPY_BUFFER)
            writer.flush()
            os.fsync(writer.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _unlink_file(path: Path) -> bool:
    try:
        path.unlink()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return False
    return True


def _remove_tree(folder: Path) -> int:
    removed = 0
    for parent, folders, files in os.walk(folder, topdown=False):
        for name in files:
            if _unlink_file(Path(parent, name)):
                removed += 1
        for name in folders:
            _remove_empty_folder(Path(parent, name))
    _remove_empty_folder(folder)
    return removed


def _remove_empty_folder(folder: Path) -> bool:
    try:
        folder.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        # Not empty (a concurrent put) or a symlink: leave it.
        return False
    return True


def _prune_empty_folders(folder: Path, root: Path) -> None:
    while folder != root and root in folder.parents:
        if not _remove_empty_folder(folder):
            return
        folder = folder.parent


class S3Storage:
    """Objects in one bucket of an S3-compatible store, through one long-lived client."""

    # Keys per list_objects_v2 page and per delete_objects call (S3 allows at most 1000).
    delete_batch = 1000

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None,
        region: str,
        access_key: str | None,
        secret_key: str | None,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
    ) -> None:
        self.bucket = bucket
        self._endpoint_url = endpoint_url
        self._region = region
        self._access_key = access_key
        self._secret_key = secret_key
        self._config = AioConfig(
            s3={"addressing_style": "path"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
        )
        self._stack: AsyncExitStack | None = None
        self._s3: S3Client | None = None

    @property
    def _client(self) -> S3Client:
        if self._s3 is None:
            raise RuntimeError("S3Storage.start() was not awaited")
        return self._s3

    async def start(self) -> None:
        if self._s3 is not None:
            return
        stack = AsyncExitStack()
        try:
            self._s3 = await stack.enter_async_context(
                AioSession().create_client(
                    "s3",
                    endpoint_url=self._endpoint_url,
                    region_name=self._region,
                    aws_access_key_id=self._access_key,
                    aws_secret_access_key=self._secret_key,
                    config=self._config,
                )
            )
            await self._ensure_bucket()
        except BaseException:
            self._s3 = None
            await stack.aclose()
            raise
        self._stack = stack

    async def _ensure_bucket(self) -> None:
        try:
            await self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as error:
            if _error_code(error) not in _NO_BUCKET:
                raise
        try:
            if self._region == "us-east-1":
                await self._client.create_bucket(Bucket=self.bucket)
            else:
                await self._client.create_bucket(
                    Bucket=self.bucket,
                    CreateBucketConfiguration={"LocationConstraint": self._region},  # type: ignore[typeddict-item]
                )
        except ClientError as error:
            if _error_code(error) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    async def close(self) -> None:
        stack, self._stack, self._s3 = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def check(self) -> None:
        await self._client.head_bucket(Bucket=self.bucket)

    async def put_file(self, key: str, path: str, content_type: str) -> None:
        validate_key(key)
        size = (await anyio.Path(path).stat()).st_size
        if size <= MULTIPART_THRESHOLD:
            # At most MULTIPART_THRESHOLD bytes in memory; the request is signed over them.
            body = await anyio.Path(path).read_bytes()
            await self._client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType=content_type
            )
        else:
            await self._put_multipart(key, path, size, content_type)
        await anyio.Path(path).unlink()

    async def _put_multipart(self, key: str, path: str, size: int, content_type: str) -> None:
        mebibyte = 1024 * 1024
        part_size = max(PART_SIZE, math.ceil(size / _MAX_PARTS / mebibyte) * mebibyte)
        upload = await self._client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ContentType=content_type
        )
        upload_id = upload["UploadId"]
        try:
            parts: list[CompletedPartTypeDef] = []
            async with await anyio.open_file(path, "rb") as file:
                while chunk := await file.read(part_size):
                    number = len(parts) + 1
                    answer = await self._client.upload_part(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=chunk,
                    )
                    parts.append({"PartNumber": number, "ETag": answer["ETag"]})
            await self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                try:
                    await self._client.abort_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=upload_id
                    )
                except Exception:
                    # Keep the first error; a lifecycle rule on the bucket reaps the parts.
                    log.warning("could not abort a multipart upload", key=key, exc_info=True)
            raise

    async def stat(self, key: str) -> StoredObject | None:
        validate_key(key)
        try:
            head = await self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if _error_code(error) in _NO_OBJECT:
                return None
            raise
        return StoredObject(key=key, size=head["ContentLength"])

    def read(
        self,
        key: str,
        start: int = 0,
        end: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> AsyncIterator[bytes]:
        validate_key(key)
        _validate_range(start, end, chunk_size)
        return self._read(key, start, end, chunk_size)

    async def _read(
        self, key: str, start: int, end: int | None, chunk_size: int
    ) -> AsyncIterator[bytes]:
        try:
            if start == 0 and end is None:
                # No Range header: an empty object would answer a range with 416.
                answer = await self._client.get_object(Bucket=self.bucket, Key=key)
            else:
                byte_range = f"bytes={start}-{'' if end is None else end}"
                answer = await self._client.get_object(
                    Bucket=self.bucket, Key=key, Range=byte_range
                )
        except ClientError as error:
            code = _error_code(error)
            if code in _NO_OBJECT:
                raise FileNotFoundError(errno.ENOENT, "no such object", key) from error
            if code == "InvalidRange":
                return
            raise
        async with answer["Body"] as body:
            async for chunk in body.iter_chunks(chunk_size):
                yield chunk

    async def delete(self, key: str) -> None:
        validate_key(key)
        await self._client.delete_object(Bucket=self.bucket, Key=key)

    async def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix)
        removed = 0
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": self.delete_batch}
        )
        async for page in pages:
            keys = [entry["Key"] for entry in page.get("Contents", [])]
            if not keys:
                continue
            answer = await self._client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
            )
            errors = answer.get("Errors", [])
            if errors:
                first = errors[0]
                raise OSError(
                    f"could not delete {len(errors)} objects under {prefix!r}: "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )
            removed += len(keys)
        return removed


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def create_storage(settings: MediaSettings) -> Storage:
    """The storage backend the settings choose; call ``start()`` before use."""
    if settings.storage_backend == "local":
        return LocalStorage(settings.storage_path())
    access_key = settings.s3_access_key
    secret_key = settings.s3_secret_key
    return S3Storage(
        bucket=settings.s3_bucket,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key=None if access_key is None else access_key.get_secret_value(),
        secret_key=None if secret_key is None else secret_key.get_secret_value(),
    )
