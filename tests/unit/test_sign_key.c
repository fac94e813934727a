/*
 * test_sign_key - key files: what loads (PKCS#1, PKCS#8, ed25519,
 * opendkim-genkey output when the tool is installed) and what is refused,
 * each error naming the file; sign_keys_load errors for the tables.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/conf.h"
#include "sign/sign.h"
#include "sign/sign_key.h"

static char dir[64];

static void setup(void)
{
	strcpy(dir, "/tmp/wskey.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

/* put - write a file under dir with mode; path to out. */
static void put(char *out, const char *name, const char *text, mode_t mode)
{
	FILE *f;

	snprintf(out, 256, "%s/%s", dir, name);
	f = fopen(out, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	cr_assert_eq(chmod(out, mode), 0);
}

/* gen_pem - a generated key written as PEM to name. */
static void gen_pem(char *out, const char *name, int type, unsigned bits)
{
	struct sign_key *k = NULL;
	char *pem;
	size_t len;

	cr_assert_eq(sign_key_generate(&k, type, bits), 0);
	cr_assert_eq(sign_key_write_pem(k, &pem, &len), 0);
	put(out, name, pem, 0600);
	free(pem);
	sign_key_free(k);
}

/* refused - loading path fails with code and err names the file. */
static void refused(const char *path, int code, const char *why)
{
	struct sign_key *k = NULL;
	char err[512] = "";

	cr_assert_eq(sign_key_load(&k, path, err, sizeof(err)), code, "%s",
		     err);
	cr_assert_null(k);
	cr_assert(strstr(err, path), "error '%s' does not name the file", err);
	cr_assert(strstr(err, why), "error '%s' lacks '%s'", err, why);
}

TestSuite(sign_key, .init = setup, .fini = teardown);

Test(sign_key, loads_pkcs8_rsa_and_ed25519)
{
	struct sign_key *k = NULL;
	char p[256], err[256] = "";

	gen_pem(p, "rsa.private", SIGN_KEY_RSA, 2048);
	cr_assert_eq(sign_key_load(&k, p, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(k->type, SIGN_KEY_RSA);
	cr_assert_eq(k->bits, 2048);
	cr_assert_str_eq(sign_key_alg(k), "rsa-sha256");
	sign_key_free(k);

	gen_pem(p, "ed.private", SIGN_KEY_ED25519, 0);
	cr_assert_eq(sign_key_load(&k, p, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(k->type, SIGN_KEY_ED25519);
	cr_assert_str_eq(sign_key_alg(k), "ed25519-sha256");
	sign_key_free(k);
}

Test(sign_key, loads_pkcs1)
{
	struct sign_key *k = NULL;
	char p[256], err[256] = "", cmd[1024];
	FILE *f;

	snprintf(p, sizeof(p), "%s/pkcs1.private", dir);
	snprintf(cmd, sizeof(cmd),
		 "cp %s/rfc8463/rsa.private %s && chmod 600 %s",
		 WAXSEAL_TESTDATA, p, p);
	cr_assert_eq(system(cmd), 0);
	f = fopen(p, "r");
	cr_assert_not_null(f);
	cr_assert(fgets(cmd, sizeof(cmd), f));
	fclose(f);
	cr_assert_str_eq(cmd, "-----BEGIN RSA PRIVATE KEY-----\n");
	cr_assert_eq(sign_key_load(&k, p, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(k->bits, 1024);
	sign_key_free(k);
}

Test(sign_key, loads_opendkim_genkey_output)
{
	struct sign_key *k = NULL;
	char p[256], err[256] = "", cmd[512];

	if (system("command -v opendkim-genkey >/dev/null 2>&1") != 0)
		cr_skip_test("opendkim-genkey is not installed");
	snprintf(cmd, sizeof(cmd),
		 "opendkim-genkey -D %s -d example.com -s sel", dir);
	cr_assert_eq(system(cmd), 0);
	snprintf(p, sizeof(p), "%s/sel.private", dir);
	cr_assert_eq(sign_key_load(&k, p, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(k->type, SIGN_KEY_RSA);
	sign_key_free(k);
}

Test(sign_key, refusals_name_the_file)
{
	char p[256];

	snprintf(p, sizeof(p), "%s/missing.private", dir);
	refused(p, -ENOENT, "cannot open");

	gen_pem(p, "open.private", SIGN_KEY_ED25519, 0);
	cr_assert_eq(chmod(p, 0644), 0);
	refused(p, -EPERM, "readable by everyone");

	put(p, "junk.private", "-----BEGIN PRIVATE KEY-----\nAAAA\n", 0600);
	refused(p, -EINVAL, "not a PEM private key");

	put(p, "empty.private", "", 0600);
	refused(p, -EINVAL, "not a PEM private key");
}

/* openssl_rsa - an rsa key of bits made by the openssl command, 0600. */
static void openssl_rsa(char *p, const char *name, unsigned bits)
{
	char cmd[768];

	snprintf(p, 256, "%s/%s", dir, name);
	snprintf(cmd, sizeof(cmd),
		 "openssl genrsa -out %s %u 2>/dev/null && chmod 600 %s", p,
		 bits, p);
	cr_assert_eq(system(cmd), 0);
}

Test(sign_key, rsa_size_limits)
{
	struct sign_key *k = NULL;
	char p[256];

	/* sign_key_generate itself refuses sizes out of range. */
	cr_assert_eq(sign_key_generate(&k, SIGN_KEY_RSA, 512), -EINVAL);
	cr_assert_eq(sign_key_generate(&k, SIGN_KEY_RSA, 8192), -EINVAL);
	/* BoringSSL would make 2944 bits of 3000: refused instead. */
	cr_assert_eq(sign_key_generate(&k, SIGN_KEY_RSA, 3000), -EINVAL);
	cr_assert_null(k);

	/* Key files made by openssl outside 1024-4096 bits are refused at
	 * load. */
	if (system("command -v openssl >/dev/null 2>&1") != 0)
		cr_skip_test("openssl command is not installed");
	openssl_rsa(p, "small.private", 512);
	refused(p, -EINVAL, "512 bits");
	openssl_rsa(p, "big.private", 4104);
	refused(p, -EINVAL, "4104 bits, need 1024 to 4096");
}

Test(sign_key, tables_errors)
{
	char kt[256], st[256], key[256], line[600], err[512] = "", spec[300];
	struct sign_keys *keys = NULL;
	struct conf c;

	gen_pem(key, "k.private", SIGN_KEY_ED25519, 0);
	snprintf(line, sizeof(line), "good example.com:s:%s\n", key);
	put(kt, "keytable", line, 0644);
	put(st, "signingtable", "# x\n*@example.com nosuchkey\n", 0644);
	memset(&c, 0, sizeof(c));
	snprintf(spec, sizeof(spec), "refile:%s", st);
	c.dkim_key_table = kt;
	c.dkim_signing_table = spec;
	cr_assert_eq(sign_keys_load(&keys, &c, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, st) && strstr(err, ":2:"), "%s", err);

	/* A key file that fails names the key file. */
	put(st, "signingtable", "*@example.com good\n", 0644);
	cr_assert_eq(chmod(key, 0604), 0);
	cr_assert_eq(sign_keys_load(&keys, &c, err, sizeof(err)), -EPERM);
	cr_assert(strstr(err, key), "%s", err);
	cr_assert_eq(chmod(key, 0600), 0);
	cr_assert_eq(sign_keys_load(&keys, &c, err, sizeof(err)), 0, "%s", err);
	sign_keys_free(keys);

	/* Only one table set. */
	c.dkim_signing_table = "";
	cr_assert_eq(sign_keys_load(&keys, &c, err, sizeof(err)), -EINVAL);
}
