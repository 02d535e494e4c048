package main

// LAKE_URL may name an object store: the drivers are linked here, and only
// into the programs (see lake/objectstores).
import _ "github.com/userstream/userstream/lake/objectstores"
