"""The node's libp2p identity: `swarm.pem`, its peer id and its three-word animal name.

Why write the key ourselves instead of letting hivemind do it on first start: hivemind
generates the file only inside the DHT process (after p2pd is already being launched),
sets it 0400 and reports failures as a generic P2PDaemonError. Creating it here first
lets us (1) know the peer id before the DHT starts, for the heartbeat and the log
prefix, (2) refuse a corrupt file with one clear line instead of a p2pd crash loop, and
(3) never overwrite an existing key: a lost key means a lost on-chain registration.

Format (rl-swarm reference §2.1): the raw serialized libp2p `crypto.pb` message
`PrivateKey{key_type=RSA(0), data=<PKCS#1 DER RSA-2048 key>}`; not PEM despite the
name. hivemind's `PeerID.from_identity` and p2pd's `-id` flag read exactly this.

Animal names (§2.3): md5 of the peer-id text, bytes 2, 1, 0 select adjective, adjective,
animal. Upstream uses lists of 245/245/220 words; ours are our own fixed lists (below),
so names are deterministic for a peer id but differ from the upstream web UI's.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

EXIT_IDENTITY = 78  # EX_CONFIG: swarmd treats it as fatal (restarting cannot fix a bad key)
_RSA = 0  # libp2p crypto.pb KeyType.RSA
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class IdentityError(Exception):
    """The identity file exists but cannot be used; never fixed by overwriting it."""

    exit_code = EXIT_IDENTITY

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        return (
            f"{self.path}: {self.reason}; fix: restore the node's backed-up swarm.pem "
            "there, or move this file away to start as a NEW peer (new peer id)"
        )


@dataclass(frozen=True, slots=True)
class Identity:
    path: Path
    peer_id: str
    animal: str


def load_or_create(path: Path) -> Identity:
    """Load `path`, or create a fresh RSA-2048 key there (0600) when it is absent."""
    if not path.exists():
        _create(path)
    data = _read(path)
    peer_id = peer_id_from_private(data, path)
    return Identity(path=path, peer_id=peer_id, animal=animal_name(peer_id))


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    blob = _pb_key(der)
    # O_EXCL: if another process created the file meanwhile we fail rather than
    # overwrite it; 0600 from the start, never a world-readable moment.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as fh:
        fh.write(blob)
        fh.flush()
        os.fsync(fh.fileno())


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise IdentityError(path, f"cannot read identity file ({exc.strerror})") from None


def peer_id_from_private(data: bytes, path: Path = Path("swarm.pem")) -> str:
    """base58(sha256-multihash(pb PublicKey{RSA, SPKI DER})), as libp2p computes it."""
    return peer_id_from_public(private_key_from_pb(data, path).public_key())


def private_key_from_pb(data: bytes, path: Path = Path("swarm.pem")) -> rsa.RSAPrivateKey:
    """The RSA key inside a libp2p `PrivateKey` message (the DHT signs records with it)."""
    key_type, der = _pb_parse(data, path)
    if key_type != _RSA:
        raise IdentityError(path, f"identity key type {key_type} is not RSA")
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError):
        raise IdentityError(path, "identity file holds no valid RSA private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise IdentityError(path, "identity file holds a non-RSA key")
    return key


def load_private_key(path: Path) -> rsa.RSAPrivateKey:
    return private_key_from_pb(_read(path), path)


def peer_id_from_public(key: rsa.RSAPublicKey) -> str:
    """The libp2p peer id of a public key, so a record's signer maps to a peer id."""
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    multihash = b"\x12\x20" + hashlib.sha256(_pb_key(spki)).digest()
    return _b58encode(multihash)


def animal_name(peer_id: str) -> str:
    """Three words from md5(peer id text): bytes 2, 1, 0 -> adjective, adjective, animal."""
    digest = hashlib.md5(peer_id.encode("utf-8"), usedforsecurity=False).digest()
    first = ADJECTIVES[digest[2] % len(ADJECTIVES)]
    second = ADJECTIVES[digest[1] % len(ADJECTIVES)]
    return f"{first} {second} {ANIMALS[digest[0] % len(ANIMALS)]}"


# ---- tiny protobuf + base58 codecs (two fields; not worth a dependency) -------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _pb_key(der: bytes) -> bytes:
    return b"\x08" + _varint(_RSA) + b"\x12" + _varint(len(der)) + der


def _pb_parse(data: bytes, path: Path) -> tuple[int, bytes]:
    """Read fields 1 (varint key_type) and 2 (bytes data); reject anything else."""
    try:
        fields = _pb_fields(data)
    except (ValueError, IndexError):
        raise IdentityError(path, "identity file is not a libp2p private key (corrupt or truncated)") from None
    key_type, der = fields.get(1), fields.get(2)
    if not isinstance(key_type, int) or not isinstance(der, bytes):
        raise IdentityError(path, "identity file is not a libp2p private key (fields missing)")
    return key_type, der


def _pb_fields(data: bytes) -> dict[int, int | bytes]:
    fields: dict[int, int | bytes] = {}
    i = 0
    while i < len(data):
        tag, i = _read_varint(data, i)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            fields[number], i = _read_varint(data, i)
        elif wire == 2:
            size, i = _read_varint(data, i)
            if i + size > len(data):
                raise ValueError("truncated")
            fields[number] = data[i : i + size]
            i += size
        else:
            raise ValueError("unexpected wire type")
    return fields


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _b58encode(raw: bytes) -> str:
    n = int.from_bytes(raw, "big")
    out = ""
    while n:
        n, rem = divmod(n, 58)
        out = _B58[rem] + out
    pad = len(raw) - len(raw.lstrip(b"\0"))
    return "1" * pad + out


# Our own fixed word lists (order is part of the name algorithm: never reorder).
_ADJECTIVE_WORDS = """
    agile amber ancient arctic astute azure bashful bold brave breezy bright brisk
    bubbly calm candid careful cheerful chubby clever cosmic crafty crimson curious
    dapper daring dashing dazzling deft diligent dizzy dreamy dusty eager early
    earnest elegant emerald fancy fearless feisty fierce fleet fluffy flying fond
    frosty fuzzy gentle giant gilded glad gleaming glossy golden graceful grand
    grassy gregarious grumpy hairy handy happy hardy hasty hidden hoarse humble
    hungry icy idle jolly jovial jumpy keen kind large lanky lazy leaping lively
    lofty loud lucky lunar majestic mellow merry mighty mild misty modest mossy
    muddy nimble noble noisy odd patient peaceful peppy plump polished prickly
    proud quick quiet quirky rapid rare regal restless robust rosy rough round
    rugged running rustic sandy scaly scruffy shaggy sharp shiny shy silent silky
    silver sleek sleepy slender slow sly small smooth snappy soaring soft solar
    sparkly speedy spotted spry squeaky stealthy steady stocky stout striped
    strong sturdy subtle sunny swift tall tame tawny thorny thriving tiny tough
    tranquil trusty twinkly vivid wandering warm wary whiskered wild wily wise
    witty woolly yawning young zealous zesty
    """

_ANIMAL_WORDS = """
    albatross alpaca ant anteater antelope armadillo baboon badger barracuda bat
    bear beaver bee beetle bison boar buffalo butterfly camel capybara caribou cat
    caterpillar chameleon cheetah chicken chimpanzee chinchilla cobra cockroach cod
    condor cormorant cougar coyote crab crane crocodile crow cuckoo deer dingo
    dolphin donkey dove dragonfly duck eagle eel elephant elk emu falcon ferret
    finch flamingo fly fox frog gazelle gecko gerbil gibbon giraffe gnat gnu goat
    goose gorilla grasshopper grouse gull hamster hare hawk hedgehog heron hippo
    hornet horse hummingbird hyena ibis iguana jackal jaguar jellyfish kangaroo
    kingfisher kiwi koala komodo ladybug lemur leopard lion lizard llama lobster
    lynx macaw magpie mallard manatee mandrill mantis marmot meerkat mink mole
    mongoose monkey moose mosquito mouse mule narwhal newt nightingale octopus
    okapi opossum orangutan ostrich otter owl ox panda panther parrot peacock
    pelican penguin pheasant pig pigeon platypus porcupine porpoise puffin puma
    python quail rabbit raccoon ram rat raven reindeer rhino robin salamander
    salmon scorpion seahorse seal shark sheep shrew skunk sloth slug snail snake
    sparrow spider squid squirrel starfish stingray stork swan tapir tarantula
    termite tiger toad tortoise toucan trout turkey turtle viper vulture walrus
    wasp weasel whale wildcat wolf wombat woodpecker worm yak zebra
    """
ADJECTIVES: tuple[str, ...] = tuple(_ADJECTIVE_WORDS.split())
ANIMALS: tuple[str, ...] = tuple(_ANIMAL_WORDS.split())
