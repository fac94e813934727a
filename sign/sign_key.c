/*
 * sign_key - loading, generating and using DKIM keys with BoringSSL.
 */
#include "sign/sign_key.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/base64.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

/* A key file larger than this is not a PEM key. */
#define KEY_FILE_MAX (64 * 1024)

/* key_from_pkey - take ownership of pkey and check what it is. */
static int key_from_pkey(struct sign_key **out, EVP_PKEY *pkey,
			 const char *name, char *err, size_t errlen)
{
	struct sign_key *k;
	uint8_t seed[32], pub[32];
	size_t sl = sizeof(seed);

	k = calloc(1, sizeof(*k));
	if (!k) {
		EVP_PKEY_free(pkey);
		return -ENOMEM;
	}
	k->pkey = pkey;

	switch (EVP_PKEY_id(pkey)) {
	case EVP_PKEY_RSA:
		/* RFC 8301 3.2: signers MUST use at least 1024 bits; the
		 * upper bound keeps a signature within one DNS TXT
		 * record's reach of verifiers. */
		k->type = SIGN_KEY_RSA;
		k->bits = EVP_PKEY_bits(pkey);
		if (k->bits < SIGN_KEY_RSA_MIN || k->bits > SIGN_KEY_RSA_MAX) {
			snprintf(err, errlen,
				 "%s: rsa key of %u bits, need %d to %d", name,
				 k->bits, SIGN_KEY_RSA_MIN, SIGN_KEY_RSA_MAX);
			goto fail;
		}
		break;
	case EVP_PKEY_ED25519:
		k->type = SIGN_KEY_ED25519;
		k->bits = 256;
		if (!EVP_PKEY_get_raw_private_key(pkey, seed, &sl) ||
		    sl != 32) {
			snprintf(err, errlen, "%s: bad ed25519 key", name);
			goto fail;
		}
		ED25519_keypair_from_seed(pub, k->ed, seed);
		OPENSSL_cleanse(seed, sizeof(seed));
		break;
	default:
		snprintf(err, errlen, "%s: not an rsa or ed25519 key", name);
		goto fail;
	}
	*out = k;
	return 0;

fail:
	sign_key_free(k);
	return -EINVAL;
}

/* sign_key_from_pem - parse PEM text, PKCS#1 or PKCS#8. */
int sign_key_from_pem(struct sign_key **out, const char *name, const void *pem,
		      size_t len, char *err, size_t errlen)
{
	EVP_PKEY *pkey;
	BIO *bio;

	bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio)
		return -ENOMEM;
	pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	ERR_clear_error();
	if (!pkey) {
		snprintf(err, errlen, "%s: not a PEM private key", name);
		return -EINVAL;
	}
	return key_from_pkey(out, pkey, name, err, errlen);
}

/* sign_key_load - file checks, then the PEM parse. */
int sign_key_load(struct sign_key **out, const char *path, char *err,
		  size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	ssize_t got;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: cannot open: %s", path,
			 strerror(errno));
		return r;
	}

	/* A private key anyone may read is as good as published. */
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		r = -EINVAL;
		goto fail;
	}
	if (st.st_mode & 0004) {
		snprintf(err, errlen,
			 "%s: readable by everyone (mode %04o); chmod o-r",
			 path, (unsigned)(st.st_mode & 07777));
		r = -EPERM;
		goto fail;
	}
	if (st.st_size > KEY_FILE_MAX) {
		snprintf(err, errlen, "%s: too large for a key", path);
		r = -EINVAL;
		goto fail;
	}

	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		r = -ENOMEM;
		goto fail;
	}
	got = read(fd, buf, (size_t)st.st_size);
	if (got < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: cannot read: %s", path,
			 strerror(errno));
		goto fail;
	}
	r = sign_key_from_pem(out, path, buf, (size_t)got, err, errlen);

fail:
	if (buf)
		OPENSSL_cleanse(buf, (size_t)st.st_size);
	free(buf);
	close(fd);
	return r;
}

/* sign_key_from_ed25519_seed - wrap a raw ed25519 secret. */
int sign_key_from_ed25519_seed(struct sign_key **out, const uint8_t seed[32])
{
	EVP_PKEY *pkey;
	char err[64];

	pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
	if (!pkey)
		return -ENOMEM;
	return key_from_pkey(out, pkey, "seed", err, sizeof(err));
}

/* sign_key_free - release k. */
void sign_key_free(struct sign_key *k)
{
	if (!k)
		return;
	EVP_PKEY_free(k->pkey);
	OPENSSL_cleanse(k->ed, sizeof(k->ed));
	free(k);
}

/* sign_key_alg - the a= value. */
const char *sign_key_alg(const struct sign_key *k)
{
	return k->type == SIGN_KEY_ED25519 ? "ed25519-sha256" : "rsa-sha256";
}

/* sign_key_sign - the private-key operation itself. */
int sign_key_sign(const struct sign_key *k, const uint8_t md[32], uint8_t *sig,
		  size_t *siglen)
{
	unsigned sl = 0;

	if (k->type == SIGN_KEY_ED25519) {
		if (!ED25519_sign(sig, md, 32, k->ed))
			return -EIO;
		*siglen = ED25519_SIGNATURE_LEN;
		return 0;
	}

	/* BoringSSL's RSA is safe for concurrent private-key use: its
	 * blinding and Montgomery caches take their own locks. */
	if (!RSA_sign(NID_sha256, md, 32, sig, &sl,
		      EVP_PKEY_get0_RSA(k->pkey))) {
		ERR_clear_error();
		return -EIO;
	}
	*siglen = sl;
	return 0;
}

/* sign_b64_encode - standard base64 with padding. */
char *sign_b64_encode(const uint8_t *p, size_t len)
{
	size_t ol;
	char *s;

	if (!EVP_EncodedLength(&ol, len))
		return NULL;
	s = malloc(ol);
	if (s)
		EVP_EncodeBlock((uint8_t *)s, p, len);
	return s;
}

/* sign_b64_decode - white space removed first, then strict decoding. */
int sign_b64_decode(const char *s, size_t len, uint8_t **out, size_t *outlen)
{
	char *c;
	uint8_t *o;
	size_t i, n = 0, max;

	c = malloc(len + 1);
	if (!c)
		return -ENOMEM;
	for (i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
			c[n++] = s[i];
	if (!EVP_DecodedLength(&max, n)) {
		free(c);
		return -EINVAL;
	}
	o = malloc(max + 1);
	if (!o) {
		free(c);
		return -ENOMEM;
	}
	if (!EVP_DecodeBase64(o, outlen, max, (const uint8_t *)c, n)) {
		free(c);
		free(o);
		return -EINVAL;
	}
	free(c);
	*out = o;
	return 0;
}

/* sign_key_public_b64 - DER (rsa) or raw (ed25519), then base64. */
char *sign_key_public_b64(const struct sign_key *k)
{
	uint8_t *der = NULL;
	char *s;
	int n;

	if (k->type == SIGN_KEY_ED25519)
		return sign_b64_encode(k->ed + 32, 32);
	n = i2d_PUBKEY(k->pkey, &der);
	if (n <= 0)
		return NULL;
	s = sign_b64_encode(der, (size_t)n);
	OPENSSL_free(der);
	return s;
}

/* sign_key_write_pem - PKCS#8 through a memory BIO. */
int sign_key_write_pem(const struct sign_key *k, char **pem, size_t *len)
{
	const uint8_t *data;
	size_t dl;
	BIO *bio;
	int r = -ENOMEM;

	bio = BIO_new(BIO_s_mem());
	if (!bio)
		return -ENOMEM;
	if (!PEM_write_bio_PrivateKey(bio, k->pkey, NULL, NULL, 0, NULL,
				      NULL) ||
	    !BIO_mem_contents(bio, &data, &dl))
		goto fail;
	*pem = malloc(dl + 1);
	if (!*pem)
		goto fail;
	memcpy(*pem, data, dl);
	(*pem)[dl] = '\0';
	*len = dl;
	r = 0;

fail:
	BIO_free(bio);
	return r;
}

/* sign_key_generate - fresh rsa (e = 65537) or ed25519 key. */
int sign_key_generate(struct sign_key **out, int type, unsigned bits)
{
	uint8_t pub[32], priv[64];
	char err[128];
	EVP_PKEY *pkey;
	BIGNUM *e;
	RSA *rsa;

	if (type == SIGN_KEY_ED25519) {
		ED25519_keypair(pub, priv);
		pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL,
						    priv, 32);
		OPENSSL_cleanse(priv, sizeof(priv));
		if (!pkey)
			return -ENOMEM;
		return key_from_pkey(out, pkey, "new", err, sizeof(err));
	}

	/* BoringSSL rounds other sizes down to a multiple of 128 without
	 * saying so: a key smaller than asked for is refused instead. */
	if (bits < SIGN_KEY_RSA_MIN || bits > SIGN_KEY_RSA_MAX ||
	    bits % SIGN_KEY_RSA_STEP != 0)
		return -EINVAL;
	rsa = RSA_new();
	e = BN_new();
	pkey = EVP_PKEY_new();
	if (!rsa || !e || !pkey || !BN_set_word(e, RSA_F4) ||
	    !RSA_generate_key_ex(rsa, (int)bits, e, NULL) ||
	    !EVP_PKEY_assign_RSA(pkey, rsa)) {
		RSA_free(rsa);
		BN_free(e);
		EVP_PKEY_free(pkey);
		ERR_clear_error();
		return -ENOMEM;
	}
	BN_free(e);
	return key_from_pkey(out, pkey, "new", err, sizeof(err));
}

/* sign_pubkey_from_der - SPKI first, then a bare PKCS#1 RSAPublicKey. */
int sign_pubkey_from_der(struct sign_pubkey *pk, int type, const uint8_t *der,
			 size_t len)
{
	EVP_PKEY *pkey;
	RSA *rsa;
	CBS cbs;

	memset(pk, 0, sizeof(*pk));
	pk->type = type;
	if (type == SIGN_KEY_ED25519) {
		if (len != ED25519_PUBLIC_KEY_LEN)
			return -EINVAL;
		memcpy(pk->ed, der, len);
		pk->bits = 256;
		return 0;
	}

	CBS_init(&cbs, der, len);
	pkey = EVP_parse_public_key(&cbs);
	if (!pkey || CBS_len(&cbs) != 0) {
		EVP_PKEY_free(pkey);
		CBS_init(&cbs, der, len);
		rsa = RSA_parse_public_key(&cbs);
		if (!rsa || CBS_len(&cbs) != 0) {
			RSA_free(rsa);
			ERR_clear_error();
			return -EINVAL;
		}
		pkey = EVP_PKEY_new();
		if (!pkey || !EVP_PKEY_assign_RSA(pkey, rsa)) {
			RSA_free(rsa);
			EVP_PKEY_free(pkey);
			return -ENOMEM;
		}
	}
	ERR_clear_error();
	if (EVP_PKEY_id(pkey) != EVP_PKEY_RSA) {
		EVP_PKEY_free(pkey);
		return -EINVAL;
	}
	pk->pkey = pkey;
	pk->bits = EVP_PKEY_bits(pkey);
	if (pk->bits < SIGN_KEY_RSA_MIN || pk->bits > 8192) {
		sign_pubkey_clear(pk);
		return -EINVAL;
	}
	return 0;
}

/* sign_pubkey_from_pem - SubjectPublicKeyInfo in PEM. */
int sign_pubkey_from_pem(struct sign_pubkey *pk, const char *pem, size_t len)
{
	uint8_t raw[32];
	size_t rl = sizeof(raw);
	EVP_PKEY *pkey;
	BIO *bio;
	int r;

	memset(pk, 0, sizeof(*pk));
	bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio)
		return -ENOMEM;
	pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	BIO_free(bio);
	ERR_clear_error();
	if (!pkey)
		return -EINVAL;
	if (EVP_PKEY_id(pkey) == EVP_PKEY_ED25519) {
		r = EVP_PKEY_get_raw_public_key(pkey, raw, &rl) ? 0 : -EINVAL;
		EVP_PKEY_free(pkey);
		return r ? r
			 : sign_pubkey_from_der(pk, SIGN_KEY_ED25519, raw, rl);
	}
	if (EVP_PKEY_id(pkey) != EVP_PKEY_RSA) {
		EVP_PKEY_free(pkey);
		return -EINVAL;
	}
	pk->type = SIGN_KEY_RSA;
	pk->pkey = pkey;
	pk->bits = EVP_PKEY_bits(pkey);
	return 0;
}

/* sign_pubkey_verify - RSASSA-PKCS1-v1_5 or Ed25519 over the digest. */
int sign_pubkey_verify(const struct sign_pubkey *pk, const uint8_t md[32],
		       const uint8_t *sig, size_t siglen)
{
	int ok;

	if (pk->type == SIGN_KEY_ED25519)
		return siglen == ED25519_SIGNATURE_LEN &&
		       ED25519_verify(md, 32, sig, pk->ed);
	ok = RSA_verify(NID_sha256, md, 32, sig, siglen,
			EVP_PKEY_get0_RSA(pk->pkey));
	ERR_clear_error();
	return ok == 1;
}

/* sign_pubkey_clear - release the rsa key. */
void sign_pubkey_clear(struct sign_pubkey *pk)
{
	EVP_PKEY_free(pk->pkey);
	pk->pkey = NULL;
}
