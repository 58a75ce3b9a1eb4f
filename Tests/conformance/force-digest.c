/*
 * LD_PRELOAD shim for libiscsi initiators (iscsi-test-cu, iscsi-inq, ...).
 *
 * iscsi-test-cu creates each of its sessions with
 *     iscsi_parse_full_url(iscsi, url);          // honours ?header_digest=crc32c
 *     iscsi_set_header_digest(iscsi, ISCSI_HEADER_DIGEST_NONE_CRC32C);
 * so the URL parameter is overridden and the initiator offers "None,CRC32C",
 * for which a target legitimately picks None.  This shim replaces every
 * iscsi_set_header_digest() call made by the program with the value named by
 * CAIRN_HEADER_DIGEST (crc32c | none | none-crc32c | crc32c-none; default
 * crc32c), so the login offers exactly HeaderDigest=CRC32C and a target must
 * use digests or fail the login.
 *
 * Build: cc -shared -fPIC -o force-digest.so force-digest.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <iscsi/iscsi.h>

int iscsi_set_header_digest(struct iscsi_context *iscsi, enum iscsi_header_digest digest)
{
    static int (*real)(struct iscsi_context *, enum iscsi_header_digest);
    const char *want = getenv("CAIRN_HEADER_DIGEST");

    if (real == NULL) {
        real = (int (*)(struct iscsi_context *, enum iscsi_header_digest))
            dlsym(RTLD_NEXT, "iscsi_set_header_digest");
        if (real == NULL)
            return -1;
    }
    if (want == NULL || strcmp(want, "crc32c") == 0)
        digest = ISCSI_HEADER_DIGEST_CRC32C;
    else if (strcmp(want, "none") == 0)
        digest = ISCSI_HEADER_DIGEST_NONE;
    else if (strcmp(want, "none-crc32c") == 0)
        digest = ISCSI_HEADER_DIGEST_NONE_CRC32C;
    else if (strcmp(want, "crc32c-none") == 0)
        digest = ISCSI_HEADER_DIGEST_CRC32C_NONE;
    return real(iscsi, digest);
}
