#include <cxrl/io/checkpoints.hpp>
#include <cxrl/io/event_log.hpp>

#include <catch2/catch.hpp>

#include <sstream>

namespace fs = std::filesystem;

namespace {
fs::path fresh_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("cxrl_test_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}
}  // namespace

TEST_CASE("CRC-32C matches the standard check value") {
  const std::string s = "123456789";
  CHECK(cxrl::io::detail::crc32c(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()) == 0xE3069283u);
}

TEST_CASE("event files round trip scalars and images with verified CRCs") {
  const auto dir = fresh_dir("events");
  fs::path file;
  {
    cxrl::io::EventWriter w(dir);
    w.scalar("reward/total", 0.5, 1);
    w.scalar("loss", -2.25, 2);
    w.image("grid", {0x89, 'P', 'N', 'G'}, 2, 3, 1, 2);
    file = w.path();
  }
  const auto ev = cxrl::io::read_events(file);
  REQUIRE(ev.size() == 4);
  CHECK(ev[0].file_version == "brain.Event:2");
  CHECK(ev[1].step == 1);
  CHECK(ev[1].values.at(0).tag == "reward/total");
  CHECK(ev[1].values.at(0).simple_value.value() == 0.5f);
  CHECK(ev[2].values.at(0).simple_value.value() == -2.25f);
  CHECK(ev[3].values.at(0).image_png->size() == 4);
  CHECK(ev[3].values.at(0).width == 3);

  // Flip one payload byte: the reader must name the record with the bad CRC.
  std::fstream f(file, std::ios::binary | std::ios::in | std::ios::out);
  f.seekp(static_cast<std::streamoff>(fs::file_size(file) - 8));
  f.put('\x55');
  f.close();
  CHECK_THROWS_WITH(cxrl::io::read_events(file), Catch::Contains("record 3") && Catch::Contains("CRC mismatch"));
}

TEST_CASE("checkpoint store keeps the last K and falls back past a corrupt one") {
  const auto dir = fresh_dir("ckpts");
  cxrl::io::CheckpointStore store(dir, 2);
  for (int s = 1; s <= 4; ++s) store.save(s, {{"w", torch::full({3}, static_cast<float>(s))}});
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.path().extension() == ".safetensors";
  CHECK(n == 2);
  std::ostringstream warn;
  auto c = store.load_latest(warn);
  REQUIRE(c);
  CHECK(c->step == 4);
  CHECK(warn.str().empty());

  SECTION("half-written file") {
    fs::resize_file(dir / "ckpt-00000004.safetensors", 40);
  }
  SECTION("bit rot in the data") {
    const auto p = dir / "ckpt-00000004.safetensors";
    std::fstream f(p, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(static_cast<std::streamoff>(fs::file_size(p) - 2));
    f.put('\x7f');
  }
  auto back = store.load_latest(warn);
  REQUIRE(back);
  CHECK(back->step == 3);
  CHECK(back->tensors.at("w")[0].item<float>() == 3.0f);
  CHECK_THAT(warn.str(), Catch::Contains("ckpt-00000004") && Catch::Contains("falling back"));
}
