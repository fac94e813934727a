/*
 * sign_key - DKIM private and public keys: rsa (1024 to 4096 bits) and
 * ed25519 (RFC 8463), loaded from PEM once and then used read-only by any
 * number of threads.
 */
#ifndef WAXSEAL_SIGN_KEY_H
#define WAXSEAL_SIGN_KEY_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/curve25519.h>
#include <openssl/evp.h>

enum sign_key_type { SIGN_KEY_RSA, SIGN_KEY_ED25519 };

#define SIGN_KEY_RSA_MIN 1024
#define SIGN_KEY_RSA_MAX 4096
#define SIGN_KEY_RSA_STEP 128 /* sign_key_generate makes multiples of it */
/* The longest signature: rsa-4096. */
#define SIGN_KEY_SIG_MAX 512

struct sign_key {
	int type;	/* enum sign_key_type */
	unsigned bits;	/* rsa modulus size, 256 for ed25519 */
	EVP_PKEY *pkey; /* rsa private key; owned */
	uint8_t ed[ED25519_PRIVATE_KEY_LEN]; /* ed25519 seed + public */
};

/*
 * sign_key_load - read a PEM private key file: PKCS#1 "RSA PRIVATE KEY"
 * or PKCS#8 "PRIVATE KEY" (rsa or ed25519). Refused, with "PATH: reason"
 * in err: unreadable (-errno), readable by everyone (-EPERM), malformed
 * (-EINVAL), rsa smaller than 1024 or larger than 4096 bits (-EINVAL).
 * *out is the caller's, freed with sign_key_free.
 */
int sign_key_load(struct sign_key **out, const char *path, char *err,
		  size_t errlen);

/* sign_key_from_pem - as sign_key_load, from memory; name for messages. */
int sign_key_from_pem(struct sign_key **out, const char *name, const void *pem,
		      size_t len, char *err, size_t errlen);

/* sign_key_from_ed25519_seed - an ed25519 key from its 32-byte secret. */
int sign_key_from_ed25519_seed(struct sign_key **out, const uint8_t seed[32]);

/* sign_key_free - release k (NULL is fine). */
void sign_key_free(struct sign_key *k);

/* sign_key_alg - "rsa-sha256" or "ed25519-sha256" (the a= value). */
const char *sign_key_alg(const struct sign_key *k);

/*
 * sign_key_sign - sign the SHA-256 digest of the canonicalised header
 * data: RSASSA-PKCS1-v1_5 (RFC 6376 3.3.1) or PureEdDSA over the digest
 * (RFC 8463 3). sig holds SIGN_KEY_SIG_MAX bytes. 0 or -EIO. Thread-safe.
 */
int sign_key_sign(const struct sign_key *k, const uint8_t md[32], uint8_t *sig,
		  size_t *siglen);

/*
 * sign_key_public_b64 - the p= value of the key's DNS record: rsa as
 * SubjectPublicKeyInfo DER, ed25519 as the raw 32 bytes (RFC 8463 4),
 * base64. malloc'ed; NULL on ENOMEM.
 */
char *sign_key_public_b64(const struct sign_key *k);

/*
 * sign_key_write_pem - the private key as PKCS#8 PEM, malloc'ed into
 * *pem. 0 or -ENOMEM.
 */
int sign_key_write_pem(const struct sign_key *k, char **pem, size_t *len);

/*
 * sign_key_generate - a new key: rsa of bits bits, or ed25519 (bits
 * ignored). 0, -EINVAL (bits out of range or not a multiple of
 * SIGN_KEY_RSA_STEP, the sizes BoringSSL makes) or -ENOMEM.
 */
int sign_key_generate(struct sign_key **out, int type, unsigned bits);

/* A public key for verifying. */
struct sign_pubkey {
	int type; /* enum sign_key_type */
	unsigned bits;
	EVP_PKEY *pkey; /* rsa; owned */
	uint8_t ed[ED25519_PUBLIC_KEY_LEN];
};

/*
 * sign_pubkey_from_der - a p= value decoded from base64: rsa as
 * SubjectPublicKeyInfo or bare RSAPublicKey, ed25519 as 32 raw bytes.
 * 0, -EINVAL (malformed, or rsa smaller than 1024 bits, which RFC 8301
 * section 3.2 lets verifiers refuse, or larger than 8192) or -ENOMEM.
 */
int sign_pubkey_from_der(struct sign_pubkey *pk, int type, const uint8_t *der,
			 size_t len);

/* sign_pubkey_from_pem - a "PUBLIC KEY" PEM block. 0 or -EINVAL. */
int sign_pubkey_from_pem(struct sign_pubkey *pk, const char *pem, size_t len);

/* sign_pubkey_verify - check sig over digest md. 1 good, 0 bad. */
int sign_pubkey_verify(const struct sign_pubkey *pk, const uint8_t md[32],
		       const uint8_t *sig, size_t siglen);

/* sign_pubkey_clear - release what pk owns. */
void sign_pubkey_clear(struct sign_pubkey *pk);

/*
 * sign_b64_encode - base64 of len bytes, NUL-terminated, malloc'ed.
 * sign_b64_decode - decode, ignoring white space (FWS inside b= and p=);
 * malloc'ed into *out. 0 or -EINVAL / -ENOMEM.
 */
char *sign_b64_encode(const uint8_t *p, size_t len);
int sign_b64_decode(const char *s, size_t len, uint8_t **out, size_t *outlen);

#endif
