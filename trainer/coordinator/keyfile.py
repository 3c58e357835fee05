"""The node's chain identity: one secp256k1 key in a local file, created on first start.

The file holds the private key as hex text, mode 0600. It is created with O_EXCL, so an
existing key is never overwritten (losing it loses the peer's on-chain link: a peer id
registers to one account for good). The key never appears in a log line or an error:
errors name the file and the fix only.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from trainer.coordinator.settings import ChainSettingError


def load_or_create(path: Path) -> LocalAccount:
    try:
        return _load(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    account: LocalAccount = Account.create()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _load(path)  # another process created it between our read and our create
    except OSError as exc:
        raise ChainSettingError("chain_key_path", f"cannot create {path} ({exc.strerror})",
                                "point chain_key_path at a writable directory") from None
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(account.key.hex() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return account


def _load(path: Path) -> LocalAccount:
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise ChainSettingError("chain_key_path", f"cannot read {path} ({reason})",
                                f"fix its permissions (chmod 600 {path}) or point chain_key_path elsewhere") from None
    try:
        account: LocalAccount = Account.from_key(text)
    except (ValueError, TypeError):
        raise ChainSettingError("chain_key_path", f"{path} does not hold a hex private key",
                                "restore the file from your backup, or move it away to create a new identity") from None
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(0o600)  # tighten, never loosen
    return account
