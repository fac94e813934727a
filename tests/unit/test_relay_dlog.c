/*
 * test_relay_dlog - the JSON delivery log: the line's fields, escaping
 * and UTF-8 repair, read back by Python's json module (Debian's
 * /usr/bin/python3; the tests that need it are skipped without it), and
 * the file: append, reopen after a rename, the log that writes nothing.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "relay/relay_dlog.h"
#include "relay/relay_log.h"

#define PYTHON "/usr/bin/python3"

/*
 * The reader: "dump FILE" prints each line's object as json.dumps
 * writes it (ASCII only); "utf8 FILE" reads "hex<TAB>line" pairs and
 * says whether the reply read back equals Python's own decoding of the
 * octets with errors="replace". Lines must be strict UTF-8 and strict
 * JSON (no raw control characters) or the script fails.
 */
static const char reader[] =
    "import json, sys\n"
    "data = open(sys.argv[2], \"rb\").read()\n"
    "assert data.endswith(b\"\\n\"), \"no final newline\"\n"
    "for raw in data.split(b\"\\n\")[:-1]:\n"
    "    if sys.argv[1] == \"dump\":\n"
    "        obj = json.loads(raw.decode(\"utf-8\"))\n"
    "        print(json.dumps(obj, ensure_ascii=True))\n"
    "    else:\n"
    "        h, line = raw.split(b\"\\t\", 1)\n"
    "        got = json.loads(line.decode(\"utf-8\"))[\"reply\"]\n"
    "        want = bytes.fromhex(h.decode()).decode(\"utf-8\", "
    "\"replace\")\n"
    "        print(\"ok\" if got == want else \"bad %s %s %s\" % "
    "(h.decode(), ascii(got), ascii(want)))\n";

/* A temporary directory per test, removed by the test's end. */
static char dir[64];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/test_relay_dlog.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		cr_log_warn("cannot remove %s", dir);
}

TestSuite(relay_dlog, .init = setup, .fini = teardown);

/* slurp - a file's content, NUL-terminated (malloc'd). */
static char *slurp(const char *path, size_t *len)
{
	char *buf;
	long n;
	FILE *f;

	f = fopen(path, "rb");
	cr_assert_not_null(f, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	if (len != NULL)
		*len = (size_t)n;
	return buf;
}

/* run_reader - the reader's output for mode and file (malloc'd). */
static char *run_reader(const char *mode, const char *file)
{
	char script[PATH_MAX], cmd[PATH_MAX * 3], *out;
	size_t n = 0, cap = 1 << 16;
	FILE *f, *p;

	if (access(PYTHON, X_OK) != 0)
		cr_skip_test(PYTHON " is missing: the JSON is not parsed");

	snprintf(script, sizeof(script), "%s/reader.py", dir);
	f = fopen(script, "w");
	cr_assert_not_null(f);
	fputs(reader, f);
	fclose(f);

	snprintf(cmd, sizeof(cmd), PYTHON " %s %s %s", script, mode, file);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	out = malloc(cap);
	cr_assert_not_null(out);
	for (;;) {
		size_t got = fread(out + n, 1, cap - n - 1, p);
		if (got == 0)
			break;
		n += got;
		if (n + 1 == cap) {
			cap *= 2;
			out = realloc(out, cap);
			cr_assert_not_null(out);
		}
	}
	out[n] = '\0';
	cr_assert_eq(pclose(p), 0, "the reader failed on %s:\n%s", file, out);
	return out;
}

/* A delivery over TLS, every field set. */
static const struct relay_dlog_rec rec_full = {
    .time_ms = 1796363553123LL,
    .queue_id = "4F2A9C01",
    .message_id = "<abc@example.com>",
    .sender = "news@example.com",
    .recipient = "alice@example.org",
    .destination = "example.org",
    .mx = "mx1.example.org",
    .ip = "192.0.2.10",
    .tls_version = "TLSv1.3",
    .tls_cipher = "TLS_AES_256_GCM_SHA384",
    .reply = "250 2.0.0 Ok: queued as 123",
    .status = "delivered",
    .attempt = 1,
    .delay_ms = 12345,
};

static const char dump_full[] =
    "{\"time\": \"2026-12-04T05:52:33.123Z\", \"queue_id\": \"4F2A9C01\", "
    "\"message_id\": \"<abc@example.com>\", \"sender\": "
    "\"news@example.com\", \"recipient\": \"alice@example.org\", "
    "\"destination\": \"example.org\", \"mx\": \"mx1.example.org\", "
    "\"ip\": \"192.0.2.10\", \"tls_version\": \"TLSv1.3\", "
    "\"tls_cipher\": \"TLS_AES_256_GCM_SHA384\", \"reply\": "
    "\"250 2.0.0 Ok: queued as 123\", \"status\": \"delivered\", "
    "\"attempt\": 1, \"delay\": 12.345}";

/* No connection: NULL fields; a reason with quotes and controls. */
static const struct relay_dlog_rec rec_nulls = {
    .time_ms = 1796363553007LL,
    .queue_id = "4F2A9C02",
    .sender = "news@example.com",
    .recipient = "bob@example.net",
    .destination = "example.net",
    .reply = "our \"reason\": back\\slash\x01\x1f tab\t nl\n end",
    .status = "deferred",
    .attempt = 3,
    .delay_ms = 5,
};

static const char line_nulls[] =
    "{\"time\":\"2026-12-04T05:52:33.007Z\",\"queue_id\":\"4F2A9C02\","
    "\"message_id\":null,\"sender\":\"news@example.com\",\"recipient\":"
    "\"bob@example.net\",\"destination\":\"example.net\",\"mx\":null,"
    "\"ip\":null,\"tls_version\":null,\"tls_cipher\":null,\"reply\":"
    "\"our \\\"reason\\\": back\\\\slash\\u0001\\u001f tab\\u0009 "
    "nl\\u000a end\",\"status\":\"deferred\",\"attempt\":3,"
    "\"delay\":0.005}\n";

static const char dump_nulls[] =
    "{\"time\": \"2026-12-04T05:52:33.007Z\", \"queue_id\": \"4F2A9C02\", "
    "\"message_id\": null, \"sender\": \"news@example.com\", "
    "\"recipient\": \"bob@example.net\", \"destination\": "
    "\"example.net\", \"mx\": null, \"ip\": null, \"tls_version\": null, "
    "\"tls_cipher\": null, \"reply\": \"our \\\"reason\\\": "
    "back\\\\slash\\u0001\\u001f tab\\t nl\\n end\", \"status\": "
    "\"deferred\", \"attempt\": 3, \"delay\": 0.005}";

/* An SMTPUTF8 recipient, a reply with octets that are not UTF-8. */
static const struct relay_dlog_rec rec_utf8 = {
    .time_ms = 0,
    .queue_id = "4F2A9C03",
    .message_id = "<\xe2\x82\xac@example.com>",
    .sender = "news@example.com",
    .recipient = "j\xc3\xb6rg@b\xc3\xbc"
		 "cher.example",
    .destination = "b\xc3\xbc"
		   "cher.example",
    .reply = "550 \xff\xfe bad \xc3",
    .status = "bounced",
    .attempt = 0,
    .delay_ms = -2000,
};

static const char dump_utf8[] =
    "{\"time\": \"1970-01-01T00:00:00.000Z\", \"queue_id\": \"4F2A9C03\", "
    "\"message_id\": \"<\\u20ac@example.com>\", \"sender\": "
    "\"news@example.com\", \"recipient\": "
    "\"j\\u00f6rg@b\\u00fccher.example\", \"destination\": "
    "\"b\\u00fccher.example\", \"mx\": null, \"ip\": null, "
    "\"tls_version\": null, \"tls_cipher\": null, \"reply\": "
    "\"550 \\ufffd\\ufffd bad \\ufffd\", \"status\": \"bounced\", "
    "\"attempt\": 0, \"delay\": 0.0}";

Test(relay_dlog, format_escapes_and_nulls)
{
	char buf[2048];
	size_t n;

	n = relay_dlog_format(&rec_nulls, buf, sizeof(buf));
	cr_assert_eq(n, strlen(line_nulls));
	cr_assert_str_eq(buf, line_nulls);
}

Test(relay_dlog, format_reports_length_needed)
{
	char full[2048], small[40];
	size_t n, m;

	n = relay_dlog_format(&rec_full, full, sizeof(full));
	cr_assert_eq(n, strlen(full));
	cr_assert_eq(full[n - 1], '\n');

	m = relay_dlog_format(&rec_full, small, sizeof(small));
	cr_assert_eq(m, n);
	cr_assert_eq(strlen(small), sizeof(small) - 1);
	cr_assert_eq(strncmp(small, full, sizeof(small) - 1), 0);

	/* Exactly the room for the line but not its NUL. */
	m = relay_dlog_format(&rec_full, small, 0);
	cr_assert_eq(m, n);
	char *exact = malloc(n);
	cr_assert_not_null(exact);
	cr_assert_eq(relay_dlog_format(&rec_full, exact, n), n);
	cr_assert_eq(strlen(exact), n - 1);
	free(exact);
}

Test(relay_dlog, lines_read_by_python)
{
	struct relay_dlog *l;
	char path[128], want[8192];
	char *out;

	snprintf(path, sizeof(path), "%s/delivery.log", dir);
	cr_assert_eq(relay_dlog_open(&l, path), 0);
	relay_dlog_write(l, &rec_full);
	relay_dlog_write(l, &rec_nulls);
	relay_dlog_write(l, &rec_utf8);
	relay_dlog_close(l);

	out = run_reader("dump", path);
	snprintf(want, sizeof(want), "%s\n%s\n%s\n", dump_full, dump_nulls,
		 dump_utf8);
	cr_assert_str_eq(out, want);
	free(out);
}

Test(relay_dlog, long_line_written_whole)
{
	struct relay_dlog_rec r = rec_full;
	struct relay_dlog *l;
	char path[128], *reply, *line, *file, *out;
	size_t n, len, i;

	/* A reply far longer than the stack buffer. */
	reply = malloc(20001);
	cr_assert_not_null(reply);
	for (i = 0; i < 20000; i++)
		reply[i] = i % 100 == 99 ? '"' : (char)('a' + i % 26);
	reply[20000] = '\0';
	r.reply = reply;

	snprintf(path, sizeof(path), "%s/delivery.log", dir);
	cr_assert_eq(relay_dlog_open(&l, path), 0);
	relay_dlog_write(l, &r);
	relay_dlog_close(l);

	n = relay_dlog_format(&r, NULL, 0);
	line = malloc(n + 1);
	cr_assert_not_null(line);
	relay_dlog_format(&r, line, n + 1);
	file = slurp(path, &len);
	cr_assert_eq(len, n);
	cr_assert_str_eq(file, line);

	out = run_reader("dump", path);
	cr_assert_not_null(strstr(out, "\"attempt\": 1, \"delay\": 12.345}"));
	free(out);
	free(file);
	free(line);
	free(reply);
}

/* Ill-formed and well-formed UTF-8, against Python's decoder. */
Test(relay_dlog, utf8_repair_matches_python)
{
	static const char *const seqs[] = {
	    "\x80",		/* lone continuation */
	    "\xc0\x80",		/* overlong NUL */
	    "\xc1\xbf",		/* overlong */
	    "\xe0\x80\x80",	/* overlong 3-octet */
	    "\xe0\xa0",		/* truncated at the end */
	    "\xe2\x82\xac",	/* EURO SIGN, well-formed */
	    "\xe2\x82x",	/* truncated before ASCII */
	    "\xed\xa0\x80",	/* surrogate D800 */
	    "\xed\x9f\xbf",	/* U+D7FF, well-formed */
	    "\xef\xbf\xbf",	/* U+FFFF, well-formed */
	    "\xf0\x8f\xbf\xbf", /* overlong 4-octet */
	    "\xf0\x9f\x98\x80", /* U+1F600, well-formed */
	    "\xf0\x9f\x98",	/* truncated */
	    "\xf4\x8f\xbf\xbf", /* U+10FFFF, well-formed */
	    "\xf4\x90\x80\x80", /* above U+10FFFF */
	    "\xf5\x80\x80\x80", /* never a lead octet */
	    "\xff\xfe\xfd",
	    "a\xc3\xa9\xc3(b\xe2(\xa1",
	    "\x01\x7f\xc2\x80\xc2\x9f\xdf\xbf",
	};
	struct relay_dlog_rec r = rec_full;
	char path[128], line[1024], hex[64], *out, *p;
	size_t i, j, n;
	FILE *f;

	snprintf(path, sizeof(path), "%s/pairs", dir);
	f = fopen(path, "wb");
	cr_assert_not_null(f);
	for (i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
		for (j = n = 0; seqs[i][j] != '\0'; j++)
			n += (size_t)sprintf(hex + n, "%02x",
					     (unsigned char)seqs[i][j]);
		r.reply = seqs[i];
		cr_assert_lt(relay_dlog_format(&r, line, sizeof(line)),
			     sizeof(line));
		fprintf(f, "%s\t%s", hex, line);
	}
	fclose(f);

	out = run_reader("utf8", path);
	for (i = 0, p = out; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
		cr_assert_eq(strncmp(p, "ok\n", 3), 0, "case %zu: %s", i, p);
		p += 3;
	}
	cr_assert_str_eq(p, "");
	free(out);
}

Test(relay_dlog, reopen_after_rename)
{
	struct relay_dlog_rec r1 = rec_full, r2 = rec_full, r3 = rec_full;
	char path[128], moved[128], l1[1024], l2[1024], l3[1024], want[4096];
	struct relay_dlog *l;
	struct stat st;
	char *got;

	r2.recipient = "second@example.org";
	r3.recipient = "third@example.org";
	relay_dlog_format(&r1, l1, sizeof(l1));
	relay_dlog_format(&r2, l2, sizeof(l2));
	relay_dlog_format(&r3, l3, sizeof(l3));

	snprintf(path, sizeof(path), "%s/delivery.log", dir);
	snprintf(moved, sizeof(moved), "%s/delivery.log.1", dir);
	umask(022);
	cr_assert_eq(relay_dlog_open(&l, path), 0);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0640, "mode %o", st.st_mode & 0777);

	/* Written to the moved file until the log is reopened. */
	relay_dlog_write(l, &r1);
	cr_assert_eq(rename(path, moved), 0);
	relay_dlog_write(l, &r2);
	cr_assert_eq(relay_dlog_reopen(l), 0);
	relay_dlog_write(l, &r3);
	relay_dlog_close(l);

	got = slurp(moved, NULL);
	snprintf(want, sizeof(want), "%s%s", l1, l2);
	cr_assert_str_eq(got, want);
	free(got);
	got = slurp(path, NULL);
	cr_assert_str_eq(got, l3);
	free(got);
}

Test(relay_dlog, reopen_failure_keeps_old_file)
{
	char sub[128], sub2[128], path[256], moved[256], line[1024];
	char want[4096], *got;
	struct relay_dlog *l;

	snprintf(sub, sizeof(sub), "%s/sub", dir);
	snprintf(sub2, sizeof(sub2), "%s/sub2", dir);
	snprintf(path, sizeof(path), "%s/d.log", sub);
	snprintf(moved, sizeof(moved), "%s/d.log", sub2);
	cr_assert_eq(mkdir(sub, 0700), 0);

	cr_assert_eq(relay_dlog_open(&l, path), 0);
	relay_dlog_write(l, &rec_full);
	cr_assert_eq(rename(sub, sub2), 0);
	cr_assert_eq(relay_dlog_reopen(l), -ENOENT);
	relay_dlog_write(l, &rec_nulls);
	relay_dlog_close(l);

	got = slurp(moved, NULL);
	relay_dlog_format(&rec_full, line, sizeof(line));
	snprintf(want, sizeof(want), "%s", line);
	relay_dlog_format(&rec_nulls, line, sizeof(line));
	strcat(want, line);
	cr_assert_str_eq(got, want);
	free(got);
}

Test(relay_dlog, open_failure)
{
	struct relay_dlog *l = (struct relay_dlog *)1;
	char path[128];

	snprintf(path, sizeof(path), "%s/missing/d.log", dir);
	cr_assert_eq(relay_dlog_open(&l, path), -ENOENT);
	cr_assert_null(l);
}

/* fd_count - how many descriptors the process has open. */
static int fd_count(void)
{
	struct dirent *e;
	int n = 0;
	DIR *d;

	d = opendir("/proc/self/fd");
	cr_assert_not_null(d);
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

Test(relay_dlog, empty_path_writes_nothing)
{
	char cwd[PATH_MAX];
	struct relay_dlog *l = NULL;
	struct dirent *e;
	int entries = 0, fds;
	DIR *d;

	/* Run where any file it created would show. */
	cr_assert_not_null(getcwd(cwd, sizeof(cwd)));
	cr_assert_eq(chdir(dir), 0);

	fds = fd_count();
	cr_assert_eq(relay_dlog_open(&l, ""), 0);
	cr_assert_not_null(l);
	cr_assert_eq(fd_count(), fds, "a descriptor was opened for \"\"");
	relay_dlog_write(l, &rec_full);
	cr_assert_eq(relay_dlog_reopen(l), 0);
	relay_dlog_write(l, &rec_nulls);
	relay_dlog_close(l);

	d = opendir(".");
	cr_assert_not_null(d);
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			entries++;
	closedir(d);
	cr_assert_eq(chdir(cwd), 0);
	cr_assert_eq(entries, 0);
}

Test(relay_dlog, lines_wait_for_flush_and_stay_in_order)
{
	struct relay_dlog_rec r = rec_full;
	char path[128], one[1024], rcpt[64], *got, *p;
	struct relay_dlog *l;
	size_t len, n, i, count = 400;

	snprintf(path, sizeof(path), "%s/delivery.log", dir);
	cr_assert_eq(relay_dlog_open(&l, path), 0);

	/* Nothing reaches the file before a flush... */
	relay_dlog_write(l, &rec_full);
	got = slurp(path, &len);
	cr_assert_eq(len, 0, "written before the flush: %s", got);
	free(got);
	relay_dlog_flush(l);
	relay_dlog_format(&rec_full, one, sizeof(one));
	got = slurp(path, &len);
	cr_assert_str_eq(got, one);
	free(got);
	relay_dlog_flush(l); /* an empty buffer writes nothing */

	/* ... but more than the buffer holds goes out whole and in order. */
	for (i = 0; i < count; i++) {
		snprintf(rcpt, sizeof(rcpt), "user%zu@example.org", i);
		r.recipient = rcpt;
		relay_dlog_write(l, &r);
	}
	got = slurp(path, &len);
	cr_assert_gt(len, strlen(one), "a full buffer was not written");
	cr_assert_eq(got[len - 1], '\n', "a line was split");
	free(got);
	relay_dlog_close(l);

	got = slurp(path, &len);
	p = strchr(got, '\n') + 1;
	for (i = 0; i < count; i++) {
		snprintf(rcpt, sizeof(rcpt), "user%zu@example.org", i);
		r.recipient = rcpt;
		n = relay_dlog_format(&r, one, sizeof(one));
		cr_assert_eq(strncmp(p, one, n), 0, "line %zu: %.80s", i, p);
		p += n;
	}
	cr_assert_str_eq(p, "");
	free(got);
}

Test(relay_dlog, daemon_log_buffered_errors_at_once)
{
	char path[128], *got;
	int fd, saved;

	/* relay_log writes to standard error: point it at a file. */
	snprintf(path, sizeof(path), "%s/waxseal.log", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	saved = dup(STDERR_FILENO);
	cr_assert_geq(saved, 0);
	cr_assert_geq(dup2(fd, STDERR_FILENO), 0);
	close(fd);

	cr_assert_eq(relay_log_buffer(1), 0);
	relay_info("ID1", "first");
	relay_warn("ID2", "second");
	got = slurp(path, NULL);
	cr_assert_str_eq(got, "", "written before the flush: %s", got);
	free(got);

	/* An error line goes out at once, behind what waited. */
	relay_err("ID3", "third");
	got = slurp(path, NULL);
	cr_assert_not_null(strstr(got, " info ID1 first\n"), "%s", got);
	cr_assert_not_null(strstr(got, " warning ID2 second\n"), "%s", got);
	cr_assert_not_null(strstr(got, " error ID3 third\n"), "%s", got);
	cr_assert(strstr(got, "first") < strstr(got, "second") &&
		      strstr(got, "second") < strstr(got, "third"),
		  "out of order: %s", got);
	free(got);

	relay_info("ID4", "fourth");
	relay_log_flush();
	got = slurp(path, NULL);
	cr_assert_not_null(strstr(got, " info ID4 fourth\n"), "%s", got);
	free(got);

	/* Turning buffering off writes what is left. */
	relay_info("ID5", "fifth");
	relay_log_buffer(0);
	got = slurp(path, NULL);
	cr_assert_not_null(strstr(got, " info ID5 fifth\n"), "%s", got);
	free(got);

	dup2(saved, STDERR_FILENO);
	close(saved);
}

Test(relay_dlog, line_longer_than_the_buffer)
{
	struct relay_dlog_rec r = rec_full;
	char path[128], first[1024], *reply, *line, *file;
	struct relay_dlog *l;
	size_t n, len, k;

	/* A reply longer than the whole 64 KiB buffer, behind a short line. */
	reply = malloc(100001);
	cr_assert_not_null(reply);
	memset(reply, 'r', 100000);
	reply[100000] = '\0';
	r.reply = reply;

	snprintf(path, sizeof(path), "%s/delivery.log", dir);
	cr_assert_eq(relay_dlog_open(&l, path), 0);
	relay_dlog_write(l, &rec_full);
	relay_dlog_write(l, &r);
	relay_dlog_close(l);

	k = relay_dlog_format(&rec_full, first, sizeof(first));
	n = relay_dlog_format(&r, NULL, 0);
	line = malloc(n + 1);
	cr_assert_not_null(line);
	relay_dlog_format(&r, line, n + 1);
	file = slurp(path, &len);
	cr_assert_eq(len, k + n);
	cr_assert_eq(memcmp(file, first, k), 0);
	cr_assert_eq(memcmp(file + k, line, n), 0);
	free(file);
	free(line);
	free(reply);
}

Test(relay_dlog, short_write_leaves_whole_lines)
{
	struct relay_dlog_rec r = rec_full;
	char path[128], errpath[128], one[1024], rcpt[64], *got, *p, *log;
	struct rlimit lim, old;
	struct relay_dlog *l;
	size_t len, n, i, kept, count = 20;
	int fd, saved;

	/* relay_log writes to standard error: keep it in a file. */
	snprintf(errpath, sizeof(errpath), "%s/waxseal.log", dir);
	fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	saved = dup(STDERR_FILENO);
	cr_assert_geq(dup2(fd, STDERR_FILENO), 0);
	close(fd);

	/*
	 * A file size limit gives the short write a full disk would: the
	 * first write stops at 1000 octets, in the middle of a line (lines
	 * are about 400), and the next one fails with EFBIG.
	 */
	signal(SIGXFSZ, SIG_IGN);
	cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 1000;
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);

	snprintf(path, sizeof(path), "%s/delivery.log", dir);
	cr_assert_eq(relay_dlog_open(&l, path), 0);
	for (i = 0; i < count; i++) {
		snprintf(rcpt, sizeof(rcpt), "user%zu@example.org", i);
		r.recipient = rcpt;
		relay_dlog_write(l, &r);
	}
	relay_dlog_flush(l);

	/* Whole lines only, the first ones, in order. */
	got = slurp(path, &len);
	cr_assert_gt(len, 0, "the short write kept nothing");
	cr_assert_lt(len, 1000, "the partial line was not cut: %zu", len);
	cr_assert_eq(got[len - 1], '\n', "a partial line is left");
	for (p = got, kept = 0; *p != '\0'; kept++) {
		snprintf(rcpt, sizeof(rcpt), "user%zu@example.org", kept);
		r.recipient = rcpt;
		n = relay_dlog_format(&r, one, sizeof(one));
		cr_assert_eq(strncmp(p, one, n), 0, "line %zu: %.80s", kept, p);
		p += n;
	}
	free(got);

	/* Room again: the next line is whole, and the loss was counted. */
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
	relay_dlog_write(l, &rec_nulls);
	relay_dlog_flush(l);

	/* A failure that a reopen ends is counted there. */
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
	relay_dlog_write(l, &rec_full);
	relay_dlog_flush(l);
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
	cr_assert_eq(relay_dlog_reopen(l), 0);
	relay_dlog_close(l);
	got = slurp(path, &len);
	cr_assert_str_eq(got + len - strlen(line_nulls), line_nulls);
	free(got);

	dup2(saved, STDERR_FILENO);
	close(saved);
	log = slurp(errpath, NULL);
	cr_assert_not_null(strstr(log, "delivery_log write failed"), "%s", log);
	snprintf(one, sizeof(one), "delivery_log resumed path=%s lost=%zu\n",
		 path, count - kept);
	cr_assert_not_null(strstr(log, one), "want %s in:\n%s", one, log);
	snprintf(one, sizeof(one), "delivery_log reopened path=%s lost=1\n",
		 path);
	cr_assert_not_null(strstr(log, one), "want %s in:\n%s", one, log);
	free(log);
}
