/*
 * sign_cli - the DKIM subcommands of the waxseal binary. Each takes the
 * subcommand's own argv (argv[0] is the subcommand name), prints --help,
 * and returns the process exit code: 0 success, 1 failure (message not
 * signed, signature not valid), 2 usage error.
 *
 *   waxseal sign -c FILE < msg > signed
 *   waxseal verify [--key DOMAIN:SELECTOR:FILE]... [--dns HOST:PORT] < msg
 *   waxseal genkey -d DOMAIN -s SELECTOR [-t rsa|ed25519] [-b BITS] [-D DIR]
 *   waxseal sign-bench [-d SECONDS] [-j MAXTHREADS]
 */
#ifndef WAXSEAL_SIGN_CLI_H
#define WAXSEAL_SIGN_CLI_H

int sign_cli_sign(int argc, char **argv);
int sign_cli_verify(int argc, char **argv);
int sign_cli_genkey(int argc, char **argv);
int sign_cli_bench(int argc, char **argv);

#endif
