#include <cxrl/io/safetensors.hpp>

#include <catch2/catch.hpp>

#include <cxrl/io/checkpoints.hpp>
#include <cxrl/io/stb.hpp>

#include <csignal>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using cxrl::io::CheckpointError;

namespace {
fs::path tmp_file(const std::string& name) { return fs::temp_directory_path() / ("cxrl_test_" + name); }

void write_raw(const fs::path& p, const std::string& header, std::size_t data_bytes) {
  std::ofstream f(p, std::ios::binary);
  const std::uint64_t n = header.size();
  f.write(reinterpret_cast<const char*>(&n), 8);
  f << header;
  f << std::string(data_bytes, '\0');
}

std::string error_of(const fs::path& p) {
  try {
    cxrl::io::load_safetensors(p);
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("safetensors round trip is bit-exact for every dtype") {
  cxrl::io::TensorMap m;
  m["f64"] = torch::randn({3, 2}, torch::kFloat64);
  m["f32"] = torch::randn({4}, torch::kFloat32);
  m["f16"] = torch::randn({2, 2}).to(torch::kFloat16);
  m["bf16"] = torch::randn({5}).to(torch::kBFloat16);
  m["i64"] = torch::arange(7, torch::kInt64);
  m["i32"] = torch::arange(3, torch::kInt32);
  m["i16"] = torch::arange(3, torch::kInt16);
  m["i8"] = torch::arange(-3, 3, torch::kInt8);
  m["u8"] = torch::arange(9, torch::kUInt8);
  m["bool"] = torch::tensor({true, false, true});
  m["scalar"] = torch::tensor(3.5f);
  m["empty"] = torch::zeros({0, 3});
  const auto p = tmp_file("rt.safetensors");
  cxrl::io::save_safetensors(p, m, {{"producer", "cxrl"}});
  cxrl::io::SafeTensorsFile f(p);
  REQUIRE(f.metadata().at("producer") == "cxrl");
  for (const auto& [k, v] : m) {
    auto t = f.get(k);
    CHECK(t.scalar_type() == v.scalar_type());
    CHECK(t.sizes() == v.sizes());
    CHECK(torch::equal(t, v));
  }
  fs::remove(p);
}

TEST_CASE("safetensors reads the shared fixtures' files") {
  cxrl::io::SafeTensorsFile f(fs::path(CXRL_TEST_DATA) / "ddim" / "io.safetensors");
  CHECK(f.get("alphas_cumprod").sizes() == std::vector<int64_t>{1000});
  CHECK(f.get("timesteps_50")[0].item<int64_t>() == 981);
}

TEST_CASE("safetensors header violations give distinct errors naming file and tensor") {
  const auto p = tmp_file("bad.safetensors");
  SECTION("truncated file") {
    std::ofstream(p, std::ios::binary) << "abc";
    CHECK_THAT(error_of(p), Catch::Contains("truncated file") && Catch::Contains(p.string()));
  }
  SECTION("header larger than file") {
    write_raw(p, "{}", 0);
    std::fstream f(p, std::ios::binary | std::ios::in | std::ios::out);
    const std::uint64_t n = 4096;
    f.write(reinterpret_cast<const char*>(&n), 8);
    f.close();
    CHECK_THAT(error_of(p), Catch::Contains("larger than the file"));
  }
  SECTION("header over 100 MB") {
    write_raw(p, "{}", 0);
    std::fstream f(p, std::ios::binary | std::ios::in | std::ios::out);
    const std::uint64_t n = 200'000'000;
    f.write(reinterpret_cast<const char*>(&n), 8);
    f.close();
    CHECK_THAT(error_of(p), Catch::Contains("100 MB"));
  }
  SECTION("invalid JSON") {
    write_raw(p, "{\"a\": [", 0);
    CHECK_THAT(error_of(p), Catch::Contains("not valid JSON"));
  }
  SECTION("unknown dtype") {
    write_raw(p, R"({"w":{"dtype":"F8","shape":[2],"data_offsets":[0,2]}})", 2);
    CHECK_THAT(error_of(p), Catch::Contains("'w'") && Catch::Contains("unknown dtype 'F8'") && Catch::Contains("BF16"));
  }
  SECTION("shape does not match span") {
    write_raw(p, R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8);
    CHECK_THAT(error_of(p), Catch::Contains("'w'") && Catch::Contains("12 bytes"));
  }
  SECTION("offsets past the end") {
    write_raw(p, R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8);
    CHECK_THAT(error_of(p), Catch::Contains("run past the end"));
  }
  SECTION("overlapping offsets") {
    write_raw(p, R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12);
    CHECK_THAT(error_of(p), Catch::Contains("overlapping") && Catch::Contains("'a'") && Catch::Contains("'b'"));
  }
  SECTION("metadata must be strings") {
    write_raw(p, R"({"__metadata__":{"k":1}})", 0);
    CHECK_THAT(error_of(p), Catch::Contains("__metadata__['k']"));
  }
  SECTION("pickle checkpoint gets a conversion hint") {
    const auto pk = tmp_file("model.bin");
    const char zip[] = "PK\x03\x04 some zip bytes and more bytes";
    std::ofstream(pk, std::ios::binary) << std::string(zip, sizeof zip - 1);
    CHECK_THAT(error_of(pk), Catch::Contains("pickle") && Catch::Contains("save_file"));
    fs::remove(pk);
  }
  SECTION("missing file") { CHECK_THAT(error_of(tmp_file("nope.safetensors")), Catch::Contains("not found")); }
  SECTION("element count times element size overflowing 2^64 (it used to wrap to the 16-byte span and pass)") {
    write_raw(p, R"({"x":{"dtype":"F64","shape":[1099510579201,2097154],"data_offsets":[0,16]}})", 16);
    CHECK_THAT(error_of(p), Catch::Contains("'x'") && Catch::Contains("overflows 2^64"));
    write_raw(p, R"({"x":{"dtype":"U8","shape":[4294967296,4294967296,2],"data_offsets":[0,2]}})", 2);
    CHECK_THAT(error_of(p), Catch::Contains("'x'") && Catch::Contains("more elements than 2^64"));
  }
  fs::remove(p);
}

TEST_CASE("a checkpoint write that fails (disk full) leaves the previous file intact and says so", "[io][checkpoints]") {
  const auto p = tmp_file("full_disk.safetensors");
  cxrl::io::save_safetensors(p, {{"w", torch::arange(4, torch::kFloat32)}});
  const auto before = cxrl::io::read_file_bytes(p);
  // A child process whose file-size limit is 64 bytes stands in for a full disk: write() fails with EFBIG.
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::signal(SIGXFSZ, SIG_IGN);
    rlimit lim{64, 64};
    ::setrlimit(RLIMIT_FSIZE, &lim);
    try {
      cxrl::io::save_safetensors(p, {{"w", torch::zeros({1000})}});
      std::_Exit(1);  // the write should have failed
    } catch (const cxrl::io::CheckpointError& e) {
      const std::string m = e.what();
      std::_Exit(m.find("unchanged") != std::string::npos && m.find(p.filename().string()) != std::string::npos ? 0 : 2);
    }
    std::_Exit(3);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(cxrl::io::read_file_bytes(p) == before);  // the previous checkpoint reads back unchanged
  bool temp_left = false;
  for (const auto& e : fs::directory_iterator(p.parent_path())) temp_left |= e.path().filename().string().find(".tmp.") != std::string::npos;
  CHECK_FALSE(temp_left);
  fs::remove(p);
}

TEST_CASE("a checkpoint folder is cleaned of writes a killed process left behind", "[io][checkpoints]") {
  const auto dir = tmp_file("stale_ckpts");
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "ckpt-00000003.safetensors.tmp.4242") << "half a file";
  std::ofstream(dir / "notes.txt") << "kept";
  cxrl::io::CheckpointStore store(dir, 2);
  CHECK_FALSE(fs::exists(dir / "ckpt-00000003.safetensors.tmp.4242"));
  CHECK(fs::exists(dir / "notes.txt"));
  fs::remove_all(dir);
}

TEST_CASE("safetensors never crashes on random byte flips") {
  const auto src = tmp_file("fuzz_src.safetensors");
  cxrl::io::save_safetensors(src, {{"a", torch::randn({4, 4})}, {"b", torch::arange(5)}}, {{"m", "v"}});
  std::ifstream in(src, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), {});
  const auto p = tmp_file("fuzz.safetensors");
  std::mt19937 rng(7);
  int errors = 0, loaded = 0;
  for (int it = 0; it < 3000; ++it) {
    std::string b = bytes;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      // Bias flips toward the header, where structure lives.
      const auto pos = (rng() % 3 == 0) ? rng() % b.size() : rng() % std::min<std::size_t>(b.size(), 160);
      b[pos] = static_cast<char>(rng() & 0xff);
    }
    if (rng() % 10 == 0) b.resize(rng() % b.size());
    { std::ofstream(p, std::ios::binary | std::ios::trunc) << b; }
    try {
      auto m = cxrl::io::load_safetensors(p);
      for (auto& [k, t] : m) (void)t.sum();
      ++loaded;
    } catch (const CheckpointError&) {
      ++errors;
    }
  }
  CHECK(errors + loaded == 3000);
  CHECK(errors > 100);
  fs::remove(p);
  fs::remove(src);
}
