//! Entry point of the browser app: [`client::start`] mounts the page (all the work is in the
//! library).

fn main() {
    #[cfg(target_arch = "wasm32")]
    client::start();
}
