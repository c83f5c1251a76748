package grpcsrv

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "github.com/isa-alliance/fedreport/proto/fedreport/v1" // the generated descriptors
)

// TestCommentedDescriptorsMatchTheGeneratedCode checks that the embedded
// descriptors reflection serves are the generated code's, comments aside:
// after a change of proto/, regenerate both (docs/development.md).
func TestCommentedDescriptorsMatchTheGeneratedCode(t *testing.T) {
	t.Parallel()
	own, err := parseCommented()
	if err != nil {
		t.Fatalf("parse the embedded descriptors: %v", err)
	}
	n := 0
	commented := false
	own.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		n++
		gen, err := protoregistry.GlobalFiles.FindFileByPath(fd.Path())
		if err != nil {
			t.Errorf("%s is embedded but not generated: regenerate fedreport.binpb", fd.Path())
			return true
		}
		got := protodesc.ToFileDescriptorProto(fd)
		if got.GetSourceCodeInfo() != nil && len(got.GetSourceCodeInfo().GetLocation()) > 0 {
			commented = true
		}
		got.SourceCodeInfo = nil
		if want := protodesc.ToFileDescriptorProto(gen); !proto.Equal(got, want) {
			t.Errorf("%s differs from the generated code: regenerate fedreport.binpb (go tool -modfile=tools/go.mod buf build --exclude-imports -o internal/grpcsrv/fedreport.binpb)", fd.Path())
		}
		return true
	})
	if n == 0 || !commented {
		t.Errorf("embedded: %d files, comments %v; want fedreport's files with their comments", n, commented)
	}
	for _, path := range []string{"fedreport/v1/aggregation.proto", "fedreport/v1/coordinator.proto", "fedreport/v1/node_admin.proto", "fedreport/v1/types.proto"} {
		if _, err := own.FindFileByPath(path); err != nil {
			t.Errorf("%s is not embedded: regenerate fedreport.binpb", path)
		}
	}
}
