package main

// The object-store drivers of gocloud.dev/blob, linked only into this
// program: LAKE_URL may name any of them, through the lake package's one code
// path. Credentials come from each cloud's usual environment (AWS_*,
// GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*), never from LAKE_URL logs.
//
// This package has no tests of its own on purpose: a test binary of it would
// compile the three cloud SDKs with the race detector in every `make test`.
// Its pieces are tested where they live (internal/kafkaenv, lake,
// archiver), and the fault suite runs the built program.
import (
	_ "gocloud.dev/blob/azureblob"
	_ "gocloud.dev/blob/gcsblob"
	_ "gocloud.dev/blob/s3blob"
)
