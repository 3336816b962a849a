#!/usr/bin/python3
"""jwt_tokens.py - keys and tokens for tests/unit/test_jwt.c, made by
implementations other than moor's: PyJWT with cryptography (Debian's
python3-jwt, python3-cryptography) and node's jsonwebtoken
(tests/integration/node/node_modules, scripts/install-deps.sh).

Usage: jwt_tokens.py DIR NOW
Writes DIR/<key>.pem (public keys), DIR/hs.secret and DIR/<case>.jwt, every
time claim relative to NOW (seconds since the epoch), so the C test checks
at a time of its choosing. Tokens PyJWT will not make (duplicate claims,
bad JSON, an RSA public key as an HMAC secret) are put together here by
hand, with the standard library's hmac. Exits non-zero if anything is
missing, node's jsonwebtoken included: those cases are not optional.
"""
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

OUT = sys.argv[1]
NOW = int(sys.argv[2])
HERE = os.path.dirname(os.path.abspath(__file__))
NODE_JWT = os.path.join(HERE, "..", "integration", "node", "node_modules",
                        "jsonwebtoken")
SECRET = b"0123456789abcdef0123456789abcdef-moor-test-secret"


def write(name, data):
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(os.path.join(OUT, name), mode) as f:
        f.write(data)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pub_pem(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo)


def priv_pem(key):
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def hs_raw(header, payload, secret=SECRET, digest=hashlib.sha256):
    """A token from raw header and payload text, HMAC-signed by hand."""
    signing = b64(header.encode()) + "." + b64(payload.encode())
    mac = hmac.new(secret, signing.encode(), digest).digest()
    return signing + "." + b64(mac)


def claims(**extra):
    c = {"exp": NOW + 3600, "iat": NOW, "sub": "user-1",
         "channels": ["news", "chat.*"], "publish": ["chat.room1"]}
    c.update(extra)
    return {k: v for k, v in c.items() if v is not None}


keys = {
    "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "rsa_other": rsa.generate_private_key(public_exponent=65537,
                                          key_size=2048),
    "rsa1024": rsa.generate_private_key(public_exponent=65537,
                                        key_size=1024),
    "ec256": ec.generate_private_key(ec.SECP256R1()),
    "ec384": ec.generate_private_key(ec.SECP384R1()),
    "ec521": ec.generate_private_key(ec.SECP521R1()),
    "ed": ed25519.Ed25519PrivateKey.generate(),
}
for name, key in keys.items():
    write(name + ".pem", pub_pem(key))
write("rsa.key", priv_pem(keys["rsa"]))
write("ec256.key", priv_pem(keys["ec256"]))
write("hs.secret", SECRET + b"\n")
write("short.secret", b"only-31-bytes-of-secret-here!!\r\n")
write("two.pem", pub_pem(keys["ec256"]) + pub_pem(keys["ec384"]))
write("garbage.pem", b"-----BEGIN PUBLIC KEY-----\nnot base64\n")

tokens = {}
# Every algorithm, from PyJWT.
for alg in ("HS256", "HS384", "HS512"):
    tokens[alg.lower()] = jwt.encode(claims(), SECRET, algorithm=alg)
for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"):
    tokens[alg.lower()] = jwt.encode(claims(), keys["rsa"], algorithm=alg)
tokens["es256"] = jwt.encode(claims(), keys["ec256"], algorithm="ES256")
tokens["es384"] = jwt.encode(claims(), keys["ec384"], algorithm="ES384")
tokens["eddsa"] = jwt.encode(claims(), keys["ed"], algorithm="EdDSA")

# The wrong key, a tampered payload, a tampered signature.
tokens["rs256_other_key"] = jwt.encode(claims(), keys["rsa_other"],
                                       algorithm="RS256")
tokens["hs256_other_secret"] = jwt.encode(claims(), SECRET + b"x",
                                          algorithm="HS256")
h, p, s = tokens["rs256"].split(".")
tokens["rs256_tampered_payload"] = ".".join(
    [h, b64(json.dumps(claims(channels=["*"])).encode()), s])
h, p, s = tokens["es256"].split(".")
sig = bytearray(base64.urlsafe_b64decode(s + "=="))
sig[5] ^= 1
tokens["es256_tampered_sig"] = ".".join([h, p, b64(bytes(sig))])
h, p, s = tokens["hs256"].split(".")
sig = bytearray(base64.urlsafe_b64decode(s + "=="))
sig[-1] ^= 0x80
tokens["hs256_tampered_sig"] = ".".join([h, p, b64(bytes(sig))])
h, p, s = tokens["eddsa"].split(".")
tokens["eddsa_tampered"] = ".".join(
    [h, b64(json.dumps(claims(sub="user-2")).encode()), s])
tokens["es256_short_sig"] = ".".join(
    tokens["es256"].split(".")[:2] + [b64(bytes(63))])
tokens["es256_zero_sig"] = ".".join(
    tokens["es256"].split(".")[:2] + [b64(bytes(64))])

# alg none; an HS256 token whose "secret" is the RSA public key's PEM.
tokens["alg_none"] = (b64(b'{"alg":"none","typ":"JWT"}') + "." +
                      b64(json.dumps(claims()).encode()) + ".")
tokens["alg_none_upper"] = hs_raw('{"alg":"NONE"}', json.dumps(claims()))
tokens["hs256_rsa_pem_secret"] = hs_raw(
    '{"alg":"HS256","typ":"JWT"}', json.dumps(claims()),
    secret=pub_pem(keys["rsa"]))
tokens["hs256_rsa_pem_secret_kid"] = hs_raw(
    '{"alg":"HS256","kid":"rsa"}', json.dumps(claims()),
    secret=pub_pem(keys["rsa"]))
tokens["rs256_as_es256"] = ".".join(
    [b64(b'{"alg":"ES256"}')] + tokens["rs256"].split(".")[1:])
tokens["alg_missing"] = hs_raw('{"typ":"JWT"}', json.dumps(claims()))
tokens["alg_number"] = hs_raw('{"alg":256}', json.dumps(claims()))
tokens["alg_es512"] = hs_raw('{"alg":"ES512"}', json.dumps(claims()))

# kid selection.
tokens["es256_kid"] = jwt.encode(claims(), keys["ec256"], algorithm="ES256",
                                 headers={"kid": "ec256"})
tokens["es256_kid_renamed"] = jwt.encode(claims(), keys["ec256"],
                                         algorithm="ES256",
                                         headers={"kid": "signer-2"})
tokens["es256_kid_unknown"] = jwt.encode(claims(), keys["ec256"],
                                         algorithm="ES256",
                                         headers={"kid": "nope"})
tokens["es256_kid_rsa"] = jwt.encode(claims(), keys["ec256"],
                                     algorithm="ES256",
                                     headers={"kid": "rsa"})
tokens["rs256_kid_other"] = jwt.encode(claims(), keys["rsa"],
                                       algorithm="RS256",
                                       headers={"kid": "rsa_other"})
tokens["hs256_kid"] = jwt.encode(claims(), SECRET, algorithm="HS256",
                                 headers={"kid": "hs.secret"})

# Time.
tokens["expired"] = jwt.encode(claims(exp=NOW - 10), SECRET)
tokens["expired_long_ago"] = jwt.encode(claims(exp=NOW - 100), SECRET)
tokens["exp_now"] = jwt.encode(claims(exp=NOW), SECRET)
tokens["exp_fraction"] = jwt.encode(claims(exp=NOW + 0.75), SECRET)
tokens["exp_missing"] = jwt.encode(claims(exp=None), SECRET)
tokens["exp_string"] = hs_raw('{"alg":"HS256"}',
                              '{"exp":"%d"}' % (NOW + 3600))
tokens["exp_huge"] = hs_raw('{"alg":"HS256"}', '{"exp":1e300}')
tokens["nbf_future"] = jwt.encode(claims(nbf=NOW + 100), SECRET)
tokens["nbf_soon"] = jwt.encode(claims(nbf=NOW + 10), SECRET)
tokens["iat_future"] = jwt.encode(claims(iat=NOW + 100), SECRET)

# Audience and issuer.
tokens["aud"] = jwt.encode(claims(aud="moor", iss="issuer-a"), SECRET)
tokens["aud_array"] = jwt.encode(claims(aud=["other", "moor"]), SECRET)
tokens["aud_wrong"] = jwt.encode(claims(aud="other", iss="issuer-b"), SECRET)
tokens["aud_wrong_array"] = jwt.encode(claims(aud=["a", "b"]), SECRET)
tokens["aud_number"] = hs_raw('{"alg":"HS256"}',
                              '{"exp":%d,"aud":7}' % (NOW + 3600))
tokens["aud_array_number"] = hs_raw(
    '{"alg":"HS256"}', '{"exp":%d,"aud":["moor",7]}' % (NOW + 3600))
tokens["iss_number"] = hs_raw('{"alg":"HS256"}',
                              '{"exp":%d,"iss":1}' % (NOW + 3600))

# Structure: duplicates, bad JSON (validly signed), crit, typ.
exp = NOW + 3600
tokens["dup_claim"] = hs_raw('{"alg":"HS256"}',
                             '{"exp":%d,"sub":"a","sub":"b"}' % exp)
tokens["dup_exp"] = hs_raw('{"alg":"HS256"}',
                           '{"exp":%d,"exp":%d}' % (exp, exp + 1))
tokens["dup_header"] = hs_raw('{"alg":"HS256","alg":"HS256"}',
                              '{"exp":%d}' % exp)
tokens["bad_json"] = hs_raw('{"alg":"HS256"}', '{"exp":%d,}' % exp)
tokens["payload_array"] = hs_raw('{"alg":"HS256"}', '[%d]' % exp)
tokens["header_bad_json"] = hs_raw('{"alg":"HS256"', '{"exp":%d}' % exp)
tokens["crit"] = jwt.encode(claims(), SECRET, algorithm="HS256",
                            headers={"crit": ["exp"]})
tokens["typ_number"] = hs_raw('{"alg":"HS256","typ":1}', '{"exp":%d}' % exp)
tokens["typ_other"] = hs_raw('{"alg":"HS256","typ":"at+jwt"}',
                             '{"exp":%d}' % exp)
tokens["unknown_claims"] = hs_raw(
    '{"alg":"HS256"}',
    '{"exp":%d,"x":{"y":[1,2,{"z":null}]},"jti":"j","sub":"\\u00e9t\\u00e9"}'
    % exp)
tokens["deep_claim"] = hs_raw('{"alg":"HS256"}',
                              '{"exp":%d,"x":%s1%s}' % (exp, "[" * 20,
                                                         "]" * 20))
tokens["sub_long"] = jwt.encode(claims(sub="s" * 126 + "\u00e9" + "t" * 10),
                                SECRET)

# The channel claims.
tokens["channels_star"] = jwt.encode(claims(channels=["*"], publish=[]),
                                     SECRET)
tokens["channels_none"] = jwt.encode(claims(channels=None, publish=None),
                                     SECRET)
tokens["channels_custom"] = jwt.encode(
    claims(channels=None, publish=None, subs=["a.b", "c*"], pubs=["x"]),
    SECRET)
tokens["channels_string"] = jwt.encode(claims(channels="news"), SECRET)
tokens["channels_bad_name"] = jwt.encode(claims(channels=["bad name"]),
                                         SECRET)
tokens["channels_empty_entry"] = jwt.encode(claims(channels=[""]), SECRET)
tokens["channels_number"] = jwt.encode(claims(channels=["a", 1]), SECRET)
tokens["channels_star_middle"] = jwt.encode(claims(channels=["a*b"]), SECRET)
tokens["channels_64"] = jwt.encode(
    claims(channels=["c%d" % i for i in range(64)], publish=["p" * 127 + "*"]),
    SECRET)
tokens["channels_65"] = jwt.encode(
    claims(channels=["c%d" % i for i in range(65)]), SECRET)
tokens["channels_long"] = jwt.encode(claims(publish=["p" * 129]), SECRET)
tokens["publish_object"] = jwt.encode(claims(publish={"a": 1}), SECRET)

# The second implementation: node's jsonwebtoken, with the same keys.
if not os.path.isdir(NODE_JWT):
    sys.exit("jwt_tokens.py: %s is missing (npm install --prefix "
             "tests/integration/node, or scripts/install-deps.sh)" % NODE_JWT)
node_claims = json.dumps(claims(aud="moor"))
script = """
const jwt = require(process.argv[1]);
const fs = require('fs');
const dir = process.argv[2];
const c = JSON.parse(process.argv[3]);
const secret = fs.readFileSync(dir + '/hs.secret').subarray(0, -1);
const rsa = fs.readFileSync(dir + '/rsa.key');
const ec = fs.readFileSync(dir + '/ec256.key');
const out = {
  node_hs256: jwt.sign(c, secret, {algorithm: 'HS256'}),
  node_hs512: jwt.sign(c, secret, {algorithm: 'HS512'}),
  node_rs256: jwt.sign(c, rsa, {algorithm: 'RS256', keyid: 'rsa'}),
  node_ps384: jwt.sign(c, rsa, {algorithm: 'PS384'}),
  node_es256: jwt.sign(c, ec, {algorithm: 'ES256', keyid: 'ec256'}),
  node_expired: jwt.sign(Object.assign({}, c, {exp: c.iat - 1}), secret,
                         {algorithm: 'HS256'}),
};
for (const k in out) fs.writeFileSync(dir + '/' + k + '.jwt', out[k]);
"""
subprocess.run(["node", "-e", script, NODE_JWT, OUT, node_claims], check=True)

for name, tok in tokens.items():
    write(name + ".jwt", tok)
