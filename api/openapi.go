package api

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the API's OpenAPI 3 description; the tests validate every
// response against it and the server serves it at /openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte

func handleOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(OpenAPI)
}
