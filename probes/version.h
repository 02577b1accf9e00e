/* The probe's identity, printed in every JSON record (docs/formats.md). */
#ifndef EDGEIO_VERSION_H
#define EDGEIO_VERSION_H

#define PROBE_NAME "edgeio-fileprobe"
#define PROBE_VERSION "1.0"

#endif
