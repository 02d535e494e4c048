// Package objectstores links the object-store drivers of gocloud.dev/blob:
// a program that imports it accepts s3://, gs:// and azblob:// lake URLs,
// through the lake package's one code path. Credentials come from each
// cloud's usual environment (AWS_*, GOOGLE_APPLICATION_CREDENTIALS,
// AZURE_STORAGE_*), never from the URL.
//
// Only the programs import it (cmd/archiver, cmd/lakequery), and they have
// no tests of their own on purpose: a test binary would compile the three
// cloud SDKs with the race detector in every `make test`. The lake's tests
// link the S3 driver alone and run it against a real S3 server.
package objectstores

import (
	_ "gocloud.dev/blob/azureblob" // azblob://container/prefix
	_ "gocloud.dev/blob/gcsblob"   // gs://bucket/prefix
	_ "gocloud.dev/blob/s3blob"    // s3://bucket/prefix?region=…&endpoint=…
)
