package grpcsrv

import (
	_ "embed"
	"sync"

	"google.golang.org/grpc/reflection"
	v1reflectiongrpc "google.golang.org/grpc/reflection/grpc_reflection_v1"
	v1alphareflectiongrpc "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// commentedDescriptors is fedreport's proto files as buf builds them, with
// their comments (source info), which the generated Go code leaves out.
// Regenerate it with the code (docs/development.md):
//
//	go tool -modfile=tools/go.mod buf build --exclude-imports -o internal/grpcsrv/fedreport.binpb
//
// TestCommentedDescriptorsMatchTheGeneratedCode fails when it is stale.
//
//go:embed fedreport.binpb
var commentedDescriptors []byte

// RegisterReflection registers server reflection (v1 and v1alpha) on s, as
// reflection.Register does, but serving fedreport's own files with their
// comments, so that `grpcurl describe` shows what each service, method and
// field means. Other files (health, the well-known types) come from the
// generated code, as before.
func RegisterReflection(s reflection.GRPCServer) {
	opts := reflection.ServerOptions{Services: s, DescriptorResolver: commentedFiles()}
	v1reflectiongrpc.RegisterServerReflectionServer(s, reflection.NewServerV1(opts))
	v1alphareflectiongrpc.RegisterServerReflectionServer(s, reflection.NewServer(opts)) //nolint:staticcheck // grpcurl and older clients still ask v1alpha
}

// commentedFiles is the resolver of RegisterReflection, built once.
var commentedFiles = sync.OnceValue(func() protodesc.Resolver {
	own, err := parseCommented()
	if err != nil {
		// The generated descriptors, without comments, are still right.
		return protoregistry.GlobalFiles
	}
	return overlay{own}
})

// parseCommented builds the files of commentedDescriptors, resolving their
// imports (the well-known types) from the generated code.
func parseCommented() (*protoregistry.Files, error) {
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(commentedDescriptors, &set); err != nil {
		return nil, err
	}
	own := new(protoregistry.Files)
	for _, fdp := range set.GetFile() { // buf writes a file after its imports
		fd, err := protodesc.NewFile(fdp, overlay{own})
		if err != nil {
			return nil, err
		}
		if err := own.RegisterFile(fd); err != nil {
			return nil, err
		}
	}
	return own, nil
}

// overlay finds a file or descriptor in own first, then in the generated
// code's registry.
type overlay struct{ own *protoregistry.Files }

func (o overlay) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	if fd, err := o.own.FindFileByPath(path); err == nil {
		return fd, nil
	}
	return protoregistry.GlobalFiles.FindFileByPath(path)
}

func (o overlay) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	if d, err := o.own.FindDescriptorByName(name); err == nil {
		return d, nil
	}
	return protoregistry.GlobalFiles.FindDescriptorByName(name)
}
