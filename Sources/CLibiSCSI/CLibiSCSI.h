#ifndef CLIBISCSI_H
#define CLIBISCSI_H
/* iscsi.h and scsi-lowlevel.h use these types without including their headers. */
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#endif
