//! Compiles `proto/onoal.proto` (the gRPC service) with protox: pure Rust, no protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onoal.proto");
    let descriptors = protox::compile(["proto/onoal.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
